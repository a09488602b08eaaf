"""The node's settings: typed sections, each field declared once with its parameter name and rules, as data.

`config.depth.max_age_ms` reads a typed field of one immutable snapshot (the way PickNik's
generate_parameter_library does it); the parameter names stay flat (`depth_max_age_ms`) so
that existing parameter files and launch arguments keep working. No ROS here: `ros/params.py`
turns these rules into ROS parameter descriptors.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Callable

from sam2_ros.core.backends import BACKENDS
from sam2_ros.core.everything import EverythingSettings
from sam2_ros.core.model import PRECISIONS, ModelSpec
from sam2_ros.core.networks.registry import DEFAULT_DETECTOR, DEFAULT_MODEL, detector_names, model_names
from sam2_ros.core.text import phrases_of

MAX_LABEL = {"mono8": 255, "16UC1": 65535}  # the largest object id a label image of each encoding carries


def unlabelled(ids, mask_encoding: str) -> list[int]:
    """Return the ids, ascending, that a label image of this encoding cannot carry."""
    return sorted(i for i in ids if i > MAX_LABEL[mask_encoding])


@dataclass(frozen=True)
class OutputSettings:
    """How masks become messages: the output parameters a frame's result is built with."""

    score_threshold: float = 0.0  # masks scoring below are reported as not visible
    contour_epsilon: float = 0.0  # polygon simplification tolerance, pixels
    min_area: float = 0.0  # smaller regions and holes are left out of contours, pixels
    mask_encoding: str = "mono8"  # label image: mono8 (ids <= 255) or 16UC1
    depth_erode_px: int = 2  # the mask shrinks by this before depth is sampled (borders mix depths)
    depth_min_pixels: int = 10  # fewer valid depth readings on an object: no 3D


@dataclass(frozen=True)
class Param:
    """One parameter: default, meaning, rules, and whether a change needs a restart."""

    name: str
    default: object
    description: str
    read_only: bool = False
    int_range: tuple[int, int] | None = None
    float_range: tuple[float, float] | None = None
    choices: tuple[str, ...] = ()
    multiple_of: int = 1
    validate: Callable[[Any], object] | None = None  # raises ValueError on a value no rule above expresses

    def check(self, value: object) -> None:
        """Refuse what a range cannot express (ROS checks the ranges), saying which and why."""
        if self.choices and value not in self.choices:
            raise ValueError(f"{self.name} '{value}' is not one of: {', '.join(self.choices)}")
        if self.multiple_of > 1 and value % self.multiple_of:
            raise ValueError(f"{self.name} must be a multiple of {self.multiple_of}, got {value}")
        if self.validate is not None:
            try:
                self.validate(value)
            except ValueError as error:
                raise ValueError(f"{self.name}: {error}") from None


def param(name: str, default: Any, description: str, **rules) -> Any:
    """Declare a section field that is the parameter `name`."""
    return field(default=default, metadata={"param": Param(name, default, description, **rules)})


class Section:
    """A group of parameters read together; built only from checked values."""

    @classmethod
    def params(cls) -> tuple[Param, ...]:
        return tuple(f.metadata["param"] for f in fields(cls))

    @classmethod
    def from_values(cls, values: Mapping[str, object]):
        for p in cls.params():
            p.check(values[p.name])
        return cls(**{f.name: values[f.metadata["param"].name] for f in fields(cls)})

    def values(self) -> dict[str, object]:
        return {f.metadata["param"].name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class ModelParams(Section):
    """Which SAM 2 runs and how: fixed for a configured node (a change needs a restart)."""

    name: str = param("model", DEFAULT_MODEL, f"SAM 2, EdgeTAM or EfficientTAM: {', '.join(model_names())}",
                      read_only=True, choices=model_names())
    checkpoint: str = param("checkpoint", "", "path of the model's checkpoint (.pt), or auto: its published one, "
                            "fetched once into the Hugging Face cache (sam2_fetch pre-fetches); required",
                            read_only=True)
    device: str = param("device", "auto", "auto, cpu, cuda or cuda:N", read_only=True)
    precision: str = param("precision", "auto", "auto (bfloat16 on a CUDA GPU with native bfloat16, float32 "
                           "elsewhere); float32; bfloat16 autocast on CUDA or a CPU with bfloat16 instructions "
                           "(AMX, AVX512-BF16; backend openvino runs its graphs in bfloat16 too); float16 on CUDA",
                           read_only=True, choices=("auto", *PRECISIONS))
    compile: bool = param("compile", False, "torch.compile the image encoder and the tracking step, every shape "
                          "compiled at configure (a slower start, no stall while tracking)", read_only=True)
    image_size: int = param("image_size", 1024, "SAM 2 input size: 1024, 512 or 256 (faster, coarser)",
                            read_only=True, int_range=(128, 2048), multiple_of=32)
    max_cond_frames: int = param("max_cond_frames", 8, "prompted frames kept per tracked object", read_only=True,
                                 int_range=(1, 64))
    backend: str = param("backend", "torch", "torch; or the graphs sam2_export wrote, run by onnxruntime, "
                         "openvino or tensorrt", read_only=True, choices=BACKENDS)
    graphs: str = param("graphs", "", "the folder sam2_export wrote (backends other than torch)", read_only=True)

    def spec(self) -> ModelSpec:
        if not self.checkpoint:
            raise ValueError("no checkpoint given: set the `checkpoint` parameter to the model's .pt file, "
                             "or to auto to fetch its published one (see README.md)")
        return ModelSpec(name=self.name, checkpoint=self.checkpoint, device=self.device,
                         precision=self.precision, compile=self.compile, image_size=self.image_size,
                         backend=self.backend, graphs=self.graphs or None)


@dataclass(frozen=True)
class LifecycleParams(Section):
    """How the node starts."""

    autostart: bool = param("autostart", True, "configure and activate without a lifecycle manager",
                            read_only=True)


@dataclass(frozen=True)
class TrackingParams(Section):
    """The object set and its frames: what the tracking session keeps and accepts."""

    mode: str = param("mode", "track", "track: SAM 2 memory across frames; image: each frame on its own",
                      choices=("track", "image"))
    max_objects: int = param("max_objects", 16, "most objects tracked at once", int_range=(1, 255))
    batch_objects: bool = param("batch_objects", True, "track objects with the same memory layout in one "
                                "batched SAM 2 step (false: Meta's object-by-object loop, the reference)")
    recent_frames: int = param("recent_frames", 4, "recent frames kept for prompts stamped for them",
                               read_only=True, int_range=(1, 64))
    prompt_max_age_s: float = param("prompt_max_age_s", 0.0, "prompts stamped this long before the newest "
                                    "frame are refused (0: any stamp from the oldest kept frame on)",
                                    float_range=(0.0, 3600.0))
    detections_timeout_s: float = param("detections_timeout_s", 0.0, "image mode: detector boxes are dropped "
                                        "when no detection array came for this long (0: keep them)",
                                        float_range=(0.0, 3600.0))

    @property
    def tracks(self) -> bool:
        """True in track mode (SAM 2 memory), False in image mode."""
        return self.mode == "track"


@dataclass(frozen=True)
class InputParams(Section):
    """How camera images and prompts are taken, and the size of what is taken."""

    compressed: bool = param("compressed", False, "subscribe to image/compressed (jpeg/png) instead of image",
                             read_only=True)
    image_qos: str = param("image_qos", "sensor_data", "image subscription QoS: sensor_data or reliable",
                           read_only=True, choices=("sensor_data", "reliable"))
    image_qos_depth: int = param("image_qos_depth", 1, "image subscription queue depth", read_only=True,
                                 int_range=(1, 100))
    max_image_pixels: int = param("max_image_pixels", 16_000_000, "larger images (raw, compressed, mask "
                                  "prompts) are refused before decoding, pixels", int_range=(1, 1_000_000_000))
    max_prompt_points: int = param("max_prompt_points", 64, "prompts with more points are refused",
                                   int_range=(1, 4096))


@dataclass(frozen=True)
class RequestParams(Section):
    """The worker's queue: how much may wait, and for how long."""

    max_queued: int = param("max_queued_requests", 16, "prompts and service calls waiting for the worker; "
                            "more are refused at once", int_range=(1, 1000))
    per_frame: int = param("requests_per_frame", 2, "requests the worker runs before a waiting camera frame",
                           int_range=(1, 100))
    timeout_s: float = param("request_timeout_s", 10.0, "a service call not started by then is cancelled and "
                             "answered failed, never applied later", float_range=(0.1, 3600.0))


@dataclass(frozen=True)
class OutputParams(Section):
    """How masks become ~/result, ~/mask and ~/overlay."""

    score_threshold: float = param("score_threshold", 0.0, "masks with a lower predicted IoU are reported "
                                   "not visible", float_range=(0.0, 1.0))
    contour_epsilon: float = param("contour_epsilon", 1.0, "contour simplification tolerance in pixels "
                                   "(0: every vertex)", float_range=(0.0, 100.0))
    min_area: float = param("min_area", 0.0, "regions and holes smaller than this (pixels) have no contour",
                            float_range=(0.0, 1e9))
    mask_encoding: str = param("mask_encoding", "mono8", "label image: mono8 (ids up to 255) or 16UC1",
                               choices=tuple(MAX_LABEL))
    publish_overlay: bool = param("publish_overlay", True, "publish ~/overlay while someone subscribes")
    diagnostics_fqn: bool = param("diagnostic_updater.use_fqn", False, "name the /diagnostics status by the "
                                  "node's namespace and name (/front/sam2_segmenter_node: processing), as "
                                  "diagnostic_updater does with this parameter; false: by its name alone",
                                  read_only=True)

    @property
    def max_label(self) -> int:
        """The largest object id the label image can carry."""
        return MAX_LABEL[self.mask_encoding]


@dataclass(frozen=True)
class DepthParams(Section):
    """3D per object from a registered depth image."""

    enabled: bool = param("depth", False, "3D from a registered depth image: subscribe to depth, "
                          "depth/camera_info and camera_info; publish ~/points, ~/markers (and ~/detections_3d "
                          "with vision_msgs)", read_only=True)
    max_age_ms: float = param("depth_max_age_ms", 50.0, "the depth frame closest in stamp to a colour frame "
                              "is used when within this; else that frame is 2D only", float_range=(0.0, 10_000.0))
    wait_ms: float = param("depth_wait_ms", 1000.0, "a processed frame's outputs wait up to this for a depth "
                           "frame of its stamp not yet arrived (depth lagging colour); not while no depth came "
                           "for 5 s", float_range=(0.0, 10_000.0))
    window_s: float = param("depth_window_s", 0.0, "depth frames are kept this long (by stamp) for frames "
                            "still in SAM 2 (0: twice the lag pairing meets, 2 to 10 s; at most 300 frames)",
                            float_range=(0.0, 60.0))
    erode_px: int = param("depth_erode_px", 2, "the mask shrinks by this before depth is sampled (depth at "
                          "borders mixes object and background)", int_range=(0, 50))
    min_pixels: int = param("depth_min_pixels", 10, "fewer valid depth readings on an object: no 3D",
                            int_range=(1, 1_000_000))
    cloud_voxel_size: float = param("cloud_voxel_size", 0.01, "~/points keeps one averaged point per object "
                                    "per voxel of this side, metres (0: every point)", float_range=(0.0, 10.0))
    cloud_rgb: bool = param("cloud_rgb", True, "~/points carries each point's colour (rgb field)")


@dataclass(frozen=True)
class EverythingParams(Section):
    """~/segment_everything's defaults (Meta's SAM2AutomaticMaskGenerator's, crops aside)."""

    points_per_side: int = param("everything_points_per_side", 32, "~/segment_everything: a grid of N x N "
                                 "point prompts", int_range=(1, 64))
    points_per_batch: int = param("everything_points_per_batch", 64, "~/segment_everything: points per batch "
                                  "(one discovery step)", int_range=(1, 4096))
    pred_iou_thresh: float = param("everything_pred_iou_thresh", 0.8, "~/segment_everything: keep masks SAM 2 "
                                   "scores above this", float_range=(0.0, 1.0))
    stability_score_thresh: float = param("everything_stability_score_thresh", 0.95, "~/segment_everything: "
                                          "keep masks at least this stable", float_range=(0.0, 1.0))
    box_nms_thresh: float = param("everything_box_nms_thresh", 0.7, "~/segment_everything: box IoU above which "
                                  "the lower-scoring mask is a duplicate", float_range=(0.0, 1.0))
    min_region_area: int = param("everything_min_region_area", 0, "~/segment_everything: holes and islands of "
                                 "at most this many pixels of SAM 2's low-resolution masks are filled or removed, "
                                 "as Meta's generator does (0: off)", int_range=(0, 1_000_000))

    def settings(self) -> EverythingSettings:
        return EverythingSettings(points_per_side=self.points_per_side, points_per_batch=self.points_per_batch,
                                  pred_iou_thresh=self.pred_iou_thresh,
                                  stability_score_thresh=self.stability_score_thresh,
                                  box_nms_thresh=self.box_nms_thresh, min_mask_region_area=self.min_region_area)


@dataclass(frozen=True)
class DiscoveryParams(Section):
    """Track mode's discovery of objects no prompt named."""

    period_s: float = param("discover_period_s", 0.0, "track mode: every this many seconds, segment everything "
                            "on the newest frame and track what no object covers, labelled unknown (0: off)",
                            float_range=(0.0, 3600.0))
    batches_per_frame: int = param("discover_batches_per_frame", 1, "discovery decodes this many point batches "
                                   "after each frame, so it never holds the camera up for long",
                                   int_range=(1, 4096))
    max_objects: int = param("discover_max_objects", 4, "discovery: most objects labelled unknown tracked at "
                             "once; discovery also always leaves one of max_objects free for a user's prompt",
                             int_range=(0, 255))
    min_area: int = param("discover_min_area", 400, "discovery: smaller proposals are not tracked, pixels",
                          int_range=(0, 100_000_000))
    max_overlap: float = param("discover_max_overlap", 0.5, "discovery: a proposal with more than this share of "
                               "its pixels on a tracked (or just accepted) object is not new",
                               float_range=(0.0, 1.0))

    @property
    def on(self) -> bool:
        """True when discovery runs (a period is set)."""
        return self.period_s > 0


def text_or_none(text: str) -> None:
    """Accept an empty text prompt (none) or phrases; phrases_of says why others are refused."""
    if text:
        phrases_of(text)


@dataclass(frozen=True)
class TextParams(Section):
    """Text prompts: phrases an open-vocabulary detector finds, each box then tracked by SAM 2 as an object."""

    prompt: str = param("text_prompt", "", "phrases to find and track, separated by '.' ('cup . red ball'): the "
                        "detector's boxes become objects labelled with their phrase (empty: none)",
                        validate=text_or_none)
    detector: str = param("text_detector", DEFAULT_DETECTOR, f"the text prompts' detector: "
                          f"{', '.join(detector_names())} (fetched once by name), or the folder a transformers "
                          "detector of those families was saved to; loaded when a text prompt first comes",
                          read_only=True)
    image_size: int = param("text_image_size", 0, "the detector's input size: shortest side (Grounding DINO) "
                            "or square side (OWLv2, SAM 3); 0: the detector's own (800, 960, 1008)", read_only=True,
                            int_range=(0, 2048))
    period_s: float = param("text_period_s", 2.0, "the detector runs again this often on the newest frame: "
                            "boxes on no tracked object become new objects (0: once per text prompt)",
                            float_range=(0.0, 3600.0))
    slice_ms: float = param("text_slice_ms", 50.0, "a detector pass computes in the time the camera leaves the "
                            "model idle; when it leaves none (a frame already waits), this long after each frame",
                            float_range=(1.0, 10_000.0))
    box_threshold: float = param("text_box_threshold", 0.35, "the detector's boxes scoring above this count",
                                 float_range=(0.0, 1.0))
    text_threshold: float = param("text_threshold", 0.25, "Grounding DINO: a box's tokens above this name "
                                  "its phrase", float_range=(0.0, 1.0))
    max_objects: int = param("text_max_objects", 8, "most objects the text prompt adds and tracks at once",
                             int_range=(0, 255))
    keep_objects: bool = param("text_keep_objects", True, "when the text prompt is cleared or replaced, the "
                               "objects it added stay tracked (false: they are removed)")


@dataclass(frozen=True)
class NodeConfig:
    """One immutable snapshot of every parameter, by section; replaced whole on a change."""

    model: ModelParams = ModelParams()
    lifecycle: LifecycleParams = LifecycleParams()
    tracking: TrackingParams = TrackingParams()
    inputs: InputParams = InputParams()
    requests: RequestParams = RequestParams()
    output: OutputParams = OutputParams()
    depth: DepthParams = DepthParams()
    everything: EverythingParams = EverythingParams()
    discovery: DiscoveryParams = DiscoveryParams()
    text: TextParams = TextParams()

    @classmethod
    def from_values(cls, values: Mapping[str, object]) -> NodeConfig:
        """Build from parameter names and values; raise ValueError saying which value is wrong and why."""
        return cls(**{name: section.from_values(values) for name, section in SECTIONS.items()})

    def values(self) -> dict[str, object]:
        """Every parameter by its name."""
        return {name: value for f in fields(self) for name, value in getattr(self, f.name).values().items()}

    def changed(self, **values) -> NodeConfig:
        """Return this snapshot with some parameters (by name) changed, checked as a whole."""
        unknown = set(values) - set(DEFAULTS)
        if unknown:
            raise ValueError(f"no such parameter: {', '.join(sorted(unknown))}")
        return NodeConfig.from_values({**self.values(), **values})

    @property
    def output_settings(self) -> OutputSettings:
        """How this snapshot turns masks into messages."""
        return OutputSettings(score_threshold=self.output.score_threshold,
                              contour_epsilon=self.output.contour_epsilon, min_area=self.output.min_area,
                              mask_encoding=self.output.mask_encoding, depth_erode_px=self.depth.erode_px,
                              depth_min_pixels=self.depth.min_pixels)


SECTIONS: dict[str, type[Section]] = {f.name: type(f.default) for f in fields(NodeConfig)}
PARAMS: tuple[Param, ...] = tuple(p for section in SECTIONS.values() for p in section.params())
DEFAULTS: dict[str, object] = {p.name: p.default for p in PARAMS}
