"""Run a model's per-frame step on exported graphs: ONNX Runtime, OpenVINO or TensorRT.

The PyTorch network stays loaded and keeps everything stateful (the memory bank, object
pointers, SAM 2's decisions between parts); each exported part takes the place of its
module's forward. A call a graph was not made for (a box or mask prompt, a batch of prompts
on one image) runs the module's own forward, so every feature works on every backend.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from sam2_ros.core.export import MANIFEST, ExportError, GraphInfo, Manifest, file_sha256
from sam2_ros.core.networks import registry
from sam2_ros.core.networks.memory_attention import MemorySlots

BACKENDS = ("torch", "onnxruntime", "openvino", "tensorrt")
PACKAGES = {"onnxruntime": "onnxruntime", "openvino": "openvino", "tensorrt": "onnxruntime"}
INSTALL = {"onnxruntime": "pip install onnxruntime==1.32.0", "openvino": "pip install openvino==2026.4.1",
           "tensorrt": "pip install onnxruntime-gpu tensorrt (on a machine with an NVIDIA GPU)"}
SHAPES_KEPT = 8  # OpenVINO: a graph stays compiled for the last this many input shapes (object counts)


def compiled_cache(hint: str) -> Path | None:
    """Where OpenVINO keeps graphs compiled for one object, so the next start loads them (None: not writable).

    SAM 2.1 tiny's image encoder at 512 takes 30 s to compile and 0.2 s to load from here. The
    cache tells graphs apart by their weights and shapes but not by the precision they were
    compiled for (a float32 entry loaded as bfloat16 gave NaN), hence a folder per precision hint.
    Other object counts compile in under half a second and are not kept, which bounds the folder
    to a set of graphs per model.
    """
    folder = Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "sam2_ros" / "openvino" / hint
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return folder if os.access(folder, os.W_OK) else None


def export_command(spec, folder: Path | str, max_cond_frames: int | None = None) -> str:
    """Return the command that makes graphs for this model spec (what a refusal tells the user to run)."""
    cond = f" --max-cond-frames {max_cond_frames}" if max_cond_frames is not None else ""
    return (f"sam2_export --model {spec.name} --checkpoint {spec.checkpoint} --image-size {spec.image_size}{cond} "
            f"--out {folder}")


class Session:
    """One graph opened in a runtime, called with numpy arrays by input name.

    With `fixed_shapes`, OpenVINO compiles the graph for each input shape it is called with (the
    object count is the graph's one dynamic axis): its CPU kernels for fixed shapes ran EdgeTAM's
    memory attention at 1024 in 252 ms against 385 dynamic (bfloat16), its memory encoder in 50
    against 61. The shape of one object compiles when the graph opens (SAM 2.1 tiny's image
    encoder takes 30 s, which must not stall the first frame); any other takes 0.05 to 0.5 s,
    once, the first time that many objects are tracked.
    """

    def __init__(self, backend: str, path: Path, device: torch.device, precision: str = "float32",
                 fixed_shapes: bool = True):
        self.backend = backend
        if backend == "openvino":
            import openvino

            self._core = openvino.Core()
            self._graph = self._core.read_model(str(path))
            self._fixed_shapes = fixed_shapes
            self._names = [port.get_any_name() for port in self._graph.inputs]
            # As the model's precision says: OpenVINO's own default is bfloat16 wherever the CPU has its
            # instructions, which would make float32 models disagree with PyTorch on some CPUs only.
            self._config = {"INFERENCE_PRECISION_HINT": "bf16" if precision == "bfloat16" else "f32"}
            self._compiled: OrderedDict[tuple, tuple] = OrderedDict()  # input shapes -> (compiled, request)
            one_object = tuple(tuple(d.get_length() if d.is_static else 1 for d in port.get_partial_shape())
                               for port in self._graph.inputs)
            self._compiled_for(one_object, compiled_cache(self._config["INFERENCE_PRECISION_HINT"]))
            return
        import onnxruntime

        providers = ["CPUExecutionProvider"]
        if backend == "tensorrt":
            available = onnxruntime.get_available_providers()
            if "TensorrtExecutionProvider" not in available:
                raise ExportError(f"ONNX Runtime here has no TensorRT execution provider (it has {available}): "
                                  f"{INSTALL['tensorrt']}")
            providers = [("TensorrtExecutionProvider", {"device_id": device.index or 0}),
                         ("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]
        options = onnxruntime.SessionOptions()
        # as many threads as PyTorch's, none spinning between calls: the parts take turns with PyTorch's own ops
        options.intra_op_num_threads = torch.get_num_threads()
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = onnxruntime.InferenceSession(str(path), options, providers=providers)

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        if self.backend == "openvino":
            compiled, request = self._compiled_for(tuple(tuple(feeds[name].shape) for name in self._names))
            results = request.infer(feeds)
            return [np.asarray(results[output]) for output in compiled.outputs]
        return self._session.run(None, feeds)

    def _compiled_for(self, shapes: tuple, cache: Path | None = None) -> tuple:
        """Return the graph compiled for these input shapes (any, without fixed_shapes); the last SHAPES_KEPT kept."""
        shapes = shapes if self._fixed_shapes else ()
        if shapes not in self._compiled:
            graph = self._graph.clone()
            if shapes:
                graph.reshape({name: list(shape) for name, shape in zip(self._names, shapes)})
            config = {**self._config, "CACHE_DIR": str(cache)} if cache else self._config
            compiled = self._core.compile_model(graph, "CPU", config)
            self._compiled[shapes] = (compiled, compiled.create_infer_request())
            if len(self._compiled) > SHAPES_KEPT:
                self._compiled.popitem(last=False)
        self._compiled.move_to_end(shapes)
        return self._compiled[shapes]


class Graph:
    """An exported part called like a module: torch tensors in (as the graph's dtypes), torch tensors out."""

    def __init__(self, session: Session, info: GraphInfo, device: torch.device):
        self.session, self.info, self.device = session, info, device
        self.dtypes = [getattr(torch, dtype) for _, dtype in info.inputs]

    def __call__(self, *tensors: torch.Tensor) -> list[torch.Tensor]:
        # as the graph's dtypes, cast by torch: under bfloat16 autocast the parts between get bfloat16 tensors
        feeds = {name: np.ascontiguousarray(t.detach().to("cpu", dtype, copy=False).numpy())
                 for (name, _), t, dtype in zip(self.info.inputs, tensors, self.dtypes)}
        return [torch.from_numpy(out).to(self.device) for out in self.session.run(feeds)]


@dataclass
class ExportedStep:
    """What a tracker asks of a model's step, for exported graphs: any group size, memory up to its slots."""

    manifest: Manifest
    folder: Path

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        yield  # the graphs serve prompts as well as camera frames

    def group_size(self, objects: int) -> int:
        return objects  # the object count is a dynamic axis of every graph

    def check(self, spec, max_cond_frames: int) -> None:
        """Refuse a tracker whose memory outgrows the padded sizes the graphs were made for."""
        if max_cond_frames > self.manifest.max_cond_frames:
            raise ExportError(f"the graphs in {self.folder} hold memory for {self.manifest.max_cond_frames} prompted "
                              f"frames, the tracker keeps {max_cond_frames}: "
                              f"{export_command(spec, self.folder, max_cond_frames)}")


def check_backend(backend: str) -> None:
    """Refuse an unknown backend, or one whose runtime is not installed, with the command that fixes it."""
    if backend not in BACKENDS:
        raise ExportError(f"unknown backend '{backend}'; use {', '.join(BACKENDS)}")
    if backend != "torch" and importlib.util.find_spec(PACKAGES[backend]) is None:
        raise ExportError(f"backend '{backend}' needs the {PACKAGES[backend]} package: {INSTALL[backend]}")


def read_manifest(spec, folder: Path) -> Manifest:
    """Return the folder's manifest if it was made for this model, size and checkpoint, every graph intact."""
    fix = export_command(spec, folder)
    try:
        manifest = Manifest.read(folder)
    except ExportError as error:
        raise ExportError(f"{error}: {fix}") from None
    family = registry.family_of(spec.name).title
    wanted = {"model": spec.name, "family": family, "image_size": spec.image_size,
              "checkpoint_sha256": file_sha256(Path(spec.checkpoint).expanduser())}
    found = {key: getattr(manifest, key) for key in wanted}
    if found != wanted:
        differ = ", ".join(f"{key} {found[key]} (not {wanted[key]})" for key in wanted if found[key] != wanted[key])
        raise ExportError(f"the graphs in {folder} were made for another model: {differ}: {fix}")
    for name, info in manifest.graphs.items():
        path = folder / info.file
        if not path.is_file() or file_sha256(path) != info.sha256:
            raise ExportError(f"graph {path} is missing or not the one {MANIFEST} names: {fix}")
    return manifest


def install(model, backend: str, folder: str | Path) -> ExportedStep:
    """Put the exported graphs in place of the model's modules (the backend checked by the loader)."""
    spec, folder = model.spec, Path(folder).expanduser()
    if spec.checkpoint is None:
        raise ExportError("exported graphs are made from a checkpoint file: give `checkpoint` (random weights "
                          "have no graphs)")
    manifest = read_manifest(spec, folder)
    # OpenVINO's fixed-shape bfloat16 kernels for the mask decoder were off by 43 % of its largest output
    # (dynamic ones: 0.9 %), which moved masks; every other graph kept its error
    graphs = {name: Graph(Session(backend, folder / info.file, model.device, spec.precision,
                                  fixed_shapes=not name.startswith("mask_decoder")), info, model.device)
              for name, info in manifest.graphs.items()}
    sam = model.sam
    _encoder(sam.image_encoder, graphs["image_encoder"], manifest.levels)
    sam.sam_prompt_encoder.forward = _prompt_encoder(sam.sam_prompt_encoder.forward, graphs["prompt_encoder"])
    sam.sam_mask_decoder.forward = _mask_decoder(sam.sam_mask_decoder.forward, graphs["mask_decoder_multi"],
                                                 graphs["mask_decoder_single"])
    sam.obj_ptr_proj.forward = lambda token: graphs["obj_ptr_proj"](token)[0]
    sam.memory_encoder.forward = _memory_encoder(sam.memory_encoder.forward, graphs["memory_encoder"])
    if "spatial_perceiver" in graphs:
        sam.spatial_perceiver.forward = lambda memory, pos: tuple(graphs["spatial_perceiver"](memory, pos))
    if "memory_attention_first" in graphs:
        attention = sam.memory_attention
        attention.first_layer = lambda curr, pos: graphs["memory_attention_first"](curr, pos)[0]
        layers = {frames: graphs[f"memory_attention_{frames}"] for frames in manifest.frame_buckets}
        attention.slots = MemorySlots(frame_tokens=manifest.frame_tokens, frame_buckets=tuple(manifest.frame_buckets),
                                      pointer_tokens=manifest.pointer_tokens, on=True,
                                      layers=_memory_layers(layers, manifest.frame_tokens, manifest.pointer_tokens))
    return ExportedStep(manifest, folder)


def _encoder(encoder: torch.nn.Module, graph: Graph, levels: int) -> None:
    eager = encoder.forward

    def forward(sample: torch.Tensor) -> dict:
        if sample.shape[0] != 1:
            return eager(sample)
        out = graph(sample)
        return {"vision_features": out[0], "vision_pos_enc": out[1:1 + levels], "backbone_fpn": out[1 + levels:]}
    encoder.forward = forward


def _prompt_encoder(eager: Callable, graph: Graph) -> Callable:
    def forward(points, boxes, masks):
        if points is None or boxes is not None or masks is not None:
            return eager(points, boxes, masks)
        return tuple(graph(*points))
    return forward


def _mask_decoder(eager: Callable, multi: Graph, single: Graph) -> Callable:
    def forward(image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings, multimask_output,
                repeat_image, high_res_features=None):
        if repeat_image:
            return eager(image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings,
                         multimask_output, repeat_image, high_res_features)
        graph = multi if multimask_output else single
        return tuple(graph(image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings,
                           *(high_res_features or ())))
    return forward


def _memory_encoder(eager: Callable, graph: Graph) -> Callable:
    def forward(pix_feat, masks, skip_mask_sigmoid=False):
        if not skip_mask_sigmoid:
            return eager(pix_feat, masks, skip_mask_sigmoid)
        memory, pos = graph(pix_feat, masks)
        return {"vision_features": memory, "vision_pos_enc": [pos]}
    return forward


def _memory_layers(layers: dict[int, Graph], frame_tokens: int, pointer_tokens: int) -> Callable:
    def forward(output, memory, query_pos, memory_pos, key_mask, pointers):
        frames = (memory.shape[1] - pointer_tokens) // frame_tokens
        return layers[frames](output, memory, query_pos, memory_pos, key_mask)[0]
    return forward
