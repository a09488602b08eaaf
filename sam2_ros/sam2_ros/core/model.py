"""Load the network of any registered family from its checkpoint, safely, with errors a user can act on."""
from __future__ import annotations

import contextlib
import pickle
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ContextManager

import torch

from sam2_ros.core import backends, hub
from sam2_ros.core.networks import registry


def checkpoint_help() -> str:
    """Where each family's checkpoints are published, and what to do with one."""
    return ("; ".join(family.published for family in registry.families() if family.published)
            + "; set `checkpoint: auto` to fetch the model's own, or download one and give its path")


PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

# SAM 2's per-object work (mask decoder, memory attention) runs elementwise passes over a copy of
# the image's tokens for every object in a batch. On the CPU a big batch outgrows the caches and
# is slower than several small ones: at input size 1024, 64 points decoded at once took twice as
# long as 2 at a time, and 8 objects tracked in one step a third longer than one by one.
CPU_CALL_TOKENS = 8192  # image tokens per decoder call on the CPU: 32 prompts at input size 256, 2 at 1024


# CPU instruction-set flags (Linux /proc/cpuinfo) with native bfloat16 matrix arithmetic. Without
# them PyTorch emulates bfloat16 on the CPU, several times slower than float32.
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16", "bf16")  # Intel AMX, AVX512-BF16 (Intel, AMD Zen 4), Arm v8.6


def cpu_bf16_flags(cpuinfo: str) -> list[str]:
    """Return the bfloat16 instruction sets a /proc/cpuinfo text lists (x86 `flags`, Arm `Features`)."""
    found = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            found.update(flag for flag in value.split() if flag in BF16_CPU_FLAGS)
    return sorted(found)


def this_cpu_bf16_flags() -> list[str]:
    try:
        return cpu_bf16_flags(Path("/proc/cpuinfo").read_text())
    except OSError:  # not Linux: no way to tell, so no
        return []


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, unsafe, or of another model."""


@dataclass(frozen=True)
class ModelSpec:
    """Which SAM 2 to load and how to run it."""

    name: str = registry.DEFAULT_MODEL
    checkpoint: str | None = None  # a path; "auto": the model's published one, fetched once; None: random weights
    device: str = "auto"  # auto, cpu, cuda, cuda:N
    precision: str = "auto"  # auto; float32; bfloat16 autocast (CUDA, a CPU with bfloat16 instructions); float16 (CUDA)
    compile: bool = False  # torch.compile the image encoder (at load) and the tracking step (by the first tracker)
    image_size: int = 1024  # SAM 2's input size; 512 or 256 trade detail for speed
    backend: str = "torch"  # torch, or exported graphs run by onnxruntime, openvino or tensorrt
    graphs: str | None = None  # the folder sam2_export wrote the graphs to (backends other than torch)


@dataclass
class LoadedModel:
    """A SAM 2 network on its device with the settings it runs under."""

    sam: torch.nn.Module  # sam2.modeling.sam2_base.SAM2Base
    spec: ModelSpec
    device: torch.device
    compiled: object | None = None  # compiled_step.CompiledStep, made by the first tracker when spec.compile
    exported: object | None = None  # backends.ExportedStep: the graphs in use, when the backend is not torch

    @property
    def image_size(self) -> int:
        return int(self.sam.image_size)

    def per_call(self, wanted: int, tokens: int = CPU_CALL_TOKENS) -> int:
        """How many objects or prompts one SAM 2 call should take: all on a GPU, ~`tokens` on the CPU."""
        if self.device.type != "cpu":
            return wanted
        side = self.image_size // 16  # the image embedding's side (SAM 2's stride)
        return max(1, min(wanted, tokens // side**2))

    def autocast(self) -> ContextManager:
        """Mixed precision for inference where the spec asks for it."""
        if self.spec.precision == "float32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=PRECISIONS[self.spec.precision])


def resolve_device(device: str) -> torch.device:
    """`auto` picks CUDA when present; an unavailable CUDA device is an error, not a fallback."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise ValueError(f"invalid device '{device}'; use auto, cpu, cuda or cuda:N") from None
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device '{device}'; use auto, cpu, cuda or cuda:N")
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device '{device}' requested but CUDA is not available; use cpu")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(f"device '{device}' does not exist: "
                             f"{torch.cuda.device_count()} CUDA device(s) present")
    return resolved


def build_network(spec: ModelSpec) -> torch.nn.Module:
    """Build the architecture of `spec` with its default (random) initialisation, on the CPU."""
    family = registry.family_of(spec.name)
    if spec.image_size % 32 or not 128 <= spec.image_size <= 2048:
        raise ValueError(f"image_size must be a multiple of 32 in [128, 2048], got {spec.image_size}")
    with registry.BUILDING:
        return family.build(spec.name, spec.image_size)


def checkpoint_path(spec: ModelSpec) -> Path | None:
    """Return the file to load: the path given, or for `auto` the published one in the hub's cache."""
    if spec.checkpoint is None:
        return None
    if spec.checkpoint != hub.AUTO:
        return Path(spec.checkpoint).expanduser()
    published = registry.family_of(spec.name).hub.get(spec.name)
    if published is None:
        raise CheckpointError(f"model '{spec.name}' has no published checkpoint to fetch: give its path")
    try:
        return hub.fetch(published, spec.name)
    except hub.FetchError as error:
        raise CheckpointError(f"checkpoint auto: {error}") from None


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint's weights without unpickling anything but tensors."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: '{path}'. {checkpoint_help()}")
    with path.open("rb") as file:
        head = file.read(4)
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):  # torch.save's zip, or its legacy pickle
        raise CheckpointError(_unreadable(path, ValueError(f"it starts with {head!r}, not a zip or a pickle")))
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "Weights only load failed" not in str(error):
            raise CheckpointError(_unreadable(path, error)) from None
        raise CheckpointError(
            f"refusing checkpoint '{path}': it holds Python objects other than tensors, "
            "which could run code when loaded. Use the original published .pt file") from None
    except Exception as error:  # torch.load fails on garbage in many ways
        raise CheckpointError(_unreadable(path, error)) from None
    if not isinstance(content, dict) or not isinstance(content.get("model"), dict):
        raise CheckpointError(f"'{path}' is a PyTorch file but not a SAM 2 checkpoint: "
                              "expected a dict with a 'model' state dict, as every published checkpoint is")
    state = content["model"]
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"'{path}' is damaged or not a model checkpoint: its state dict holds {type(value).__name__} "
                f"({repr(value)[:40]}) under {key!r}, where a tensor belongs. Download it again. {checkpoint_help()}")
    return state


def _unreadable(path: Path, error: Exception) -> str:
    reason = str(error).split(".")[0].splitlines()[0] if str(error) else "no detail"
    return (f"'{path}' is not a readable PyTorch checkpoint: it is truncated or not a "
            f"checkpoint at all ({type(error).__name__}: {reason}). Download it again. "
            f"{checkpoint_help()}")


def check_fits(state: dict[str, torch.Tensor], network: torch.nn.Module, spec: ModelSpec) -> None:
    """Refuse weights of another model before load_state_dict raises a wall of keys."""
    expected = network.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    reshaped = sorted(key for key in set(state) & set(expected)
                      if tuple(state[key].shape) != tuple(expected[key].shape))
    if missing or unexpected or reshaped:
        example = (missing + unexpected + reshaped)[0]
        known = registry.recognise(state)
        if known is not None and known[1] != spec.name:
            hint = known[0].hint(known[1])
        else:
            hint = "Is it a checkpoint of another model size or family? Set `model` to match it"
        raise CheckpointError(
            f"checkpoint '{spec.checkpoint}' does not fit model '{spec.name}': "
            f"{len(missing)} missing keys, {len(unexpected)} unexpected keys, "
            f"{len(reshaped)} keys of another shape (first: '{example}'). {hint}")


def check_precision(precision: str, device: torch.device, cpu_flags: list[str] | None = None) -> None:
    """Refuse a precision the device cannot run fast: bfloat16 on a CPU needs its instructions."""
    if precision == "float32" or device.type == "cuda":
        return
    if precision != "bfloat16":
        raise ValueError(f"precision '{precision}' needs a CUDA device; use float32 or bfloat16 on {device}")
    if not (this_cpu_bf16_flags() if cpu_flags is None else cpu_flags):
        raise ValueError("precision 'bfloat16' on the CPU needs bfloat16 instructions (Intel AMX or "
                         "AVX512-BF16, AMD Zen 4, Arm v8.6 BF16), which this CPU lacks: PyTorch would "
                         "emulate it, slower than float32. Use precision float32")


def resolve_precision(precision: str, device: torch.device,
                      cuda_capability: tuple[int, int] | None = None) -> str:
    """Resolve `auto`: bfloat16 on a CUDA GPU with native bfloat16, float32 elsewhere; keep other values.

    Native bfloat16 is compute capability 8.0 on (Ampere, Orin and later), where Meta's own
    examples run SAM 2 in it; older GPUs and CPUs get float32 (on a CPU bfloat16 is opt-in).
    """
    if precision != "auto":
        return precision
    if device.type != "cuda":
        return "float32"
    capability = torch.cuda.get_device_capability(device) if cuda_capability is None else cuda_capability
    return "bfloat16" if capability >= (8, 0) else "float32"


def load_model(spec: ModelSpec) -> LoadedModel:
    """Build the network, load the checkpoint (fetched first for `auto`), move it to its device."""
    if spec.precision not in ("auto", *PRECISIONS):
        raise ValueError(f"unknown precision '{spec.precision}'; use auto, {', '.join(PRECISIONS)}")
    backends.check_backend(spec.backend)
    if spec.backend != "torch" and (spec.compile or spec.graphs is None):
        raise backends.ExportError(f"backend '{spec.backend}' runs the graphs in `graphs` (a folder sam2_export "
                                   f"wrote){'; compile is for the torch backend' if spec.compile else ''}")
    device = resolve_device(spec.device)
    spec = replace(spec, precision=resolve_precision(spec.precision, device))
    check_precision(spec.precision, device)
    network = build_network(spec)
    path = checkpoint_path(spec)
    if path is not None:
        spec = replace(spec, checkpoint=str(path))  # what the graphs' manifest is checked against
        state = read_state_dict(path)
        check_fits(state, network, spec)
        network.load_state_dict(state)
    network = network.eval()
    registry.family_of(spec.name).deploy(network)  # rearranged for inference once loaded, where a family does
    network = network.to(device)
    model = LoadedModel(sam=network, spec=spec, device=device)
    if spec.backend != "torch":
        model.exported = backends.install(model, spec.backend, spec.graphs)
    if spec.compile:
        _compile_encoder(model)
    return model


@torch.inference_mode()
def _compile_encoder(model: LoadedModel) -> None:
    """Compile the image encoder at load time rather than on the first camera frames.

    An eager pass first fills SAM 2's position-encoding cache: compiled before it, the graph
    would be compiled twice (once with the cache empty, again once it is filled).
    """
    blank = torch.zeros(1, 3, model.image_size, model.image_size, device=model.device)
    with model.autocast():
        model.sam.forward_image(blank)
        model.sam.image_encoder.forward = torch.compile(model.sam.image_encoder.forward, dynamic=False)
        model.sam.forward_image(blank)


def write_random_checkpoint(path: str | Path, name: str = registry.DEFAULT_MODEL, seed: int = 0) -> Path:
    """Save a seeded, randomly initialised network in Meta's format ({"model": state_dict}).

    Such weights give meaningless masks; they let tests and the demo run the real loading
    and inference code where Meta's checkpoints cannot be downloaded.
    """
    torch.manual_seed(seed)
    network = build_network(ModelSpec(name=name))
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": network.state_dict()}, path)
    return path
