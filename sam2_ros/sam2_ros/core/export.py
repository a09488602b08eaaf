"""Every part of SAM 2's per-frame step as an ONNX graph, and the manifest that says what they were made for.

The graphs are stateless: the memory bank, object pointers and every decision between the
parts stay in the tracker (PyTorch), as on the torch backend. Memory goes into the memory
attention padded to a few whole-frame sizes with a key mask (`MemorySlots`, as the compiled
step), one graph per size; the object count is a dynamic axis of every graph. Rotary
encodings are exported in real arithmetic (ONNX has no complex numbers).
"""
from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from sam2_ros.core.networks import registry

if TYPE_CHECKING:
    from sam2_ros.core.model import LoadedModel

FORMAT = 1
MANIFEST = "manifest.json"
OPSET = 18
BATCH = 2  # example object count: a dynamic axis is traced from an example other than 0 and 1
BY_OBJECT, BY_POINT = {0: "objects"}, {0: "objects", 1: "points"}


class ExportError(RuntimeError):
    """Graphs that cannot be made, or that were made for something else; the message says what to run."""


@dataclass(frozen=True)
class GraphInfo:
    """One graph file: its inputs (name, dtype), outputs and SHA-256."""

    file: str
    inputs: list[tuple[str, str]]
    outputs: list[str]
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """What a folder of graphs was exported from and for; the node checks it before running them."""

    family: str
    model: str
    image_size: int
    checkpoint_sha256: str
    max_cond_frames: int
    frame_tokens: int
    frame_buckets: list[int]
    pointer_tokens: int
    levels: int  # the image encoder's feature levels (positions and maps, one output each)
    opset: int = OPSET
    format: int = FORMAT
    torch: str = torch.__version__
    graphs: dict[str, GraphInfo] = field(default_factory=dict)

    def write(self, folder: Path) -> None:
        (folder / MANIFEST).write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        path = folder / MANIFEST
        try:
            data = json.loads(path.read_text())
            data["graphs"] = {name: GraphInfo(**info) for name, info in data["graphs"].items()}
            return cls(**data)
        except FileNotFoundError:
            raise ExportError(f"no {MANIFEST} in {folder}: export the graphs there first") from None
        except (ValueError, TypeError, KeyError) as error:
            raise ExportError(f"{path} is not a sam2_export manifest ({error}): export again") from None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def frame_layout(sam, max_cond_frames: int) -> tuple[int, list[int], int]:
    """Tokens per memory frame, the padded frame counts, and the padded pointer tokens (as the compiled step)."""
    cross = sam.memory_attention.layers[0].cross_attn_image
    frame_tokens = getattr(cross, "frame_tokens", sam.sam_image_embedding_size ** 2)
    per_pointer = sam.hidden_dim // sam.mem_dim if sam.mem_dim < sam.hidden_dim else 1
    buckets = sorted({sam.num_maskmem, max_cond_frames + sam.num_maskmem - 1})
    return frame_tokens, buckets, (max_cond_frames + sam.max_obj_ptrs_in_encoder - 1) * per_pointer


# ----- the parts, as modules with tensors in and tensors out -----
class ImageEncoderGraph(nn.Module):
    """Image in, features, positions and feature maps of every level out (a dict is no graph output)."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, image: torch.Tensor):
        out = self.encoder(image)
        return (out["vision_features"], *out["vision_pos_enc"], *out["backbone_fpn"])


class PromptEncoderGraph(nn.Module):
    """Points alone (no box, no mask prompt): every tracked frame's call, and clicks."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, coords: torch.Tensor, labels: torch.Tensor):
        return self.encoder(points=(coords, labels), boxes=None, masks=None)


class MaskDecoderGraph(nn.Module):
    """The decoder on a batch of objects' image features; one graph per `multimask_output`."""

    def __init__(self, decoder: nn.Module, multimask: bool):
        super().__init__()
        self.decoder, self.multimask = decoder, multimask

    def forward(self, image_embeddings, image_pe, sparse, dense, high_res_0=None, high_res_1=None):
        high_res = None if high_res_0 is None else [high_res_0, high_res_1]
        return self.decoder(image_embeddings=image_embeddings, image_pe=image_pe, sparse_prompt_embeddings=sparse,
                            dense_prompt_embeddings=dense, multimask_output=self.multimask, repeat_image=False,
                            high_res_features=high_res)


class MemoryEncoderGraph(nn.Module):
    """Features and masks (already through SAM 2's sigmoid) in, memory and its positions out."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, features: torch.Tensor, masks: torch.Tensor):
        out = self.encoder(features, masks, skip_mask_sigmoid=True)
        return out["vision_features"], out["vision_pos_enc"][0]


class FirstLayerGraph(nn.Module):
    """The memory attention's first self-attention: it reads the frame alone."""

    def __init__(self, attention: nn.Module):
        super().__init__()
        self.attention = attention

    def forward(self, curr: torch.Tensor, curr_pos: torch.Tensor):
        return self.attention.first_layer(curr, curr_pos)


class MemoryLayersGraph(nn.Module):
    """The rest of the memory attention on memory padded to one frame count, its padding masked out.

    The key mask enters the attention as a bias of 0 and -inf: with a boolean mask the exporter
    guards each softmax against rows with no key (never the case here, the memory always holds
    a frame), and the guard keeps OpenVINO from fusing the cross-attention into one operation.
    """

    def __init__(self, attention: nn.Module, pointers: int):
        super().__init__()
        self.attention, self.pointers = attention, pointers

    def forward(self, queries, memory, query_pos, memory_pos, key_mask):
        bias = torch.zeros(key_mask.shape, dtype=queries.dtype).masked_fill(~key_mask, float("-inf"))
        return self.attention.masked_layers(queries, memory, query_pos, memory_pos, bias, self.pointers)


@dataclass
class Part:
    """One graph to export: the module, its input and output names, example inputs, the axes that vary."""

    name: str
    module: nn.Module
    inputs: list[str]
    outputs: list[str]
    example: tuple[torch.Tensor, ...]
    axes: dict[str, dict[int, str]]  # input -> {axis: "objects" or "points"}: the axes whose length varies


def parts(sam: nn.Module, max_cond_frames: int) -> list[Part]:
    """Return the per-frame step's parts, with example inputs shaped as the tracker calls them."""
    size = int(sam.image_size)
    numbers = torch.Generator().manual_seed(0)  # example values (the graphs do not depend on them)

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=numbers)
    image = torch.zeros(1, 3, size, size)
    with torch.inference_mode():
        encoded = sam.image_encoder(image)
        backbone = sam.forward_image(image)
    levels = len(encoded["backbone_fpn"])
    embedding = backbone["vision_features"]
    channels, side = embedding.shape[1], embedding.shape[-1]
    high_res = [x.expand(BATCH, -1, -1, -1).clone() for x in backbone["backbone_fpn"][:-1]] \
        if sam.use_high_res_features_in_sam else []
    found = [Part("image_encoder", ImageEncoderGraph(sam.image_encoder), ["image"],
                  ["vision_features", *(f"position_{k}" for k in range(levels)), *(f"map_{k}" for k in range(levels))],
                  (image,), {})]
    coords, labels = rand(BATCH, 3, 2) * size, torch.ones(BATCH, 3, dtype=torch.int32)
    found.append(Part("prompt_encoder", PromptEncoderGraph(sam.sam_prompt_encoder), ["coords", "labels"],
                      ["sparse", "dense"], (coords, labels), {name: BY_POINT for name in ("coords", "labels")}))
    with torch.inference_mode():
        sparse, dense = sam.sam_prompt_encoder(points=(coords, labels), boxes=None, masks=None)
    decoder_inputs = ["image_embeddings", "image_pe", "sparse", "dense",
                      *(f"high_res_{k}" for k in range(len(high_res)))]
    example = (embedding.expand(BATCH, -1, -1, -1).clone(), sam.sam_prompt_encoder.get_dense_pe(), sparse.clone(),
               dense.clone(), *high_res)
    for multimask in (True, False):
        found.append(Part(f"mask_decoder_{'multi' if multimask else 'single'}", MaskDecoderGraph(sam.sam_mask_decoder,
                          multimask), decoder_inputs, ["masks", "ious", "tokens", "object_logits"], example,
                          {name: {0: "objects", 1: "points"} if name == "sparse" else BY_OBJECT
                           for name in decoder_inputs if name != "image_pe"}))
    found.append(Part("obj_ptr_proj", sam.obj_ptr_proj, ["token"], ["pointer"], (rand(BATCH, channels),),
                      {"token": BY_OBJECT}))
    found.append(Part("memory_encoder", MemoryEncoderGraph(sam.memory_encoder), ["features", "masks"],
                      ["memory", "memory_pos"], (embedding.expand(BATCH, -1, -1, -1).clone(),
                                                 rand(BATCH, 1, size, size)),
                      {"features": BY_OBJECT, "masks": BY_OBJECT}))
    perceiver = getattr(sam, "spatial_perceiver", None)
    if perceiver is not None:
        memory = rand(BATCH, sam.mem_dim, side, side)
        found.append(Part("spatial_perceiver", perceiver, ["memory", "memory_pos"], ["compressed", "compressed_pos"],
                          (memory, memory.clone()), {"memory": BY_OBJECT, "memory_pos": BY_OBJECT}))
    attention = sam.memory_attention
    if all(getattr(layer.cross_attn_image, "fixed_slots", True) for layer in attention.layers):
        tokens = side * side
        curr = rand(tokens, BATCH, channels)
        found.append(Part("memory_attention_first", FirstLayerGraph(attention), ["curr", "curr_pos"], ["attended"],
                          (curr, curr.clone()), {"curr": {1: "objects"}, "curr_pos": {1: "objects"}}))
        frame_tokens, buckets, pointer_tokens = frame_layout(sam, max_cond_frames)
        for frames in buckets:
            keys = frames * frame_tokens + pointer_tokens
            key_mask = torch.ones(1, 1, 1, keys, dtype=torch.bool)
            key_mask[..., keys - 1] = False
            found.append(Part(f"memory_attention_{frames}", MemoryLayersGraph(attention, pointer_tokens),
                              ["queries", "memory", "query_pos", "memory_pos", "key_mask"], ["attended"],
                              (rand(BATCH, tokens, channels), rand(BATCH, keys, sam.mem_dim),
                               rand(BATCH, tokens, channels), rand(BATCH, keys, sam.mem_dim), key_mask),
                              {name: BY_OBJECT for name in ("queries", "memory", "query_pos", "memory_pos")}))
    return found


def _dynamic_shapes(part: Part) -> tuple:
    """Return the object count (and a prompt's point count) as dynamic axes, by input position."""
    dims = {"objects": torch.export.Dim("objects", min=1, max=256),
            "points": torch.export.Dim("points", min=1, max=1024)}
    return tuple({axis: dims[kind] for axis, kind in part.axes.get(name, {}).items()} or None for name in part.inputs)


def export(model: LoadedModel, folder: str | Path, max_cond_frames: int = 8, verbose: bool = False) -> Manifest:
    """Write every part's graph and the manifest into `folder`; the same checkpoint gives the same files."""
    if model.spec.checkpoint is None:
        raise ExportError("graphs are made from a checkpoint file: give one (random weights have none)")
    if model.device.type != "cpu" or model.spec.precision != "float32":
        raise ExportError("export from a float32 model on the CPU (device: cpu, precision: float32)")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sam = copy.deepcopy(model.sam)  # tracing may write into modules (SAM 2's RoPE caches its table): not the model's
    frame_tokens, buckets, pointer_tokens = frame_layout(sam, max_cond_frames)
    graphs = {}
    with torch.no_grad():
        for part in parts(sam, max_cond_frames):
            path = folder / f"{part.name}.onnx"
            torch.onnx.export(part.module.eval(), part.example, str(path), input_names=part.inputs,
                              output_names=part.outputs, dynamic_shapes=_dynamic_shapes(part), opset_version=OPSET,
                              dynamo=True, external_data=False, optimize=True, verbose=verbose)
            inputs = [(name, str(x.dtype).removeprefix("torch.")) for name, x in zip(part.inputs, part.example)]
            graphs[part.name] = GraphInfo(path.name, inputs, part.outputs, file_sha256(path))
    checkpoint = Path(model.spec.checkpoint).expanduser()
    manifest = Manifest(family=registry.family_of(model.spec.name).title, model=model.spec.name,
                        image_size=model.image_size, checkpoint_sha256=file_sha256(checkpoint),
                        max_cond_frames=max_cond_frames, frame_tokens=frame_tokens, frame_buckets=buckets,
                        pointer_tokens=pointer_tokens, graphs=graphs,
                        levels=sum(name.startswith("position_") for name in graphs["image_encoder"].outputs))
    manifest.write(folder)
    return manifest
