"""The node's parameters: declared once, with descriptors, validated in one place."""
from __future__ import annotations

from dataclasses import dataclass

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult

from sam2_ros.core.model import MODEL_NAMES, PRECISIONS, ModelSpec
from sam2_ros.ros.results import OutputSettings


@dataclass(frozen=True)
class Param:
    """One parameter: default, meaning, and whether a change needs a restart."""

    name: str
    default: object
    description: str
    read_only: bool = False
    int_range: tuple[int, int] | None = None
    float_range: tuple[float, float] | None = None

    def descriptor(self) -> ParameterDescriptor:
        descriptor = ParameterDescriptor(description=self.description, read_only=self.read_only)
        if self.int_range:
            low, high = self.int_range
            descriptor.integer_range = [IntegerRange(from_value=low, to_value=high)]
        if self.float_range:
            descriptor.floating_point_range = [FloatingPointRange(
                from_value=self.float_range[0], to_value=self.float_range[1])]
        return descriptor


PARAMS = (
    Param("model", "sam2.1_hiera_tiny", f"SAM 2 model: {', '.join(MODEL_NAMES)}", read_only=True),
    Param("checkpoint", "", "path of Meta's SAM 2 checkpoint (.pt); required", read_only=True),
    Param("device", "auto", "auto, cpu, cuda or cuda:N", read_only=True),
    Param("precision", "float32", "float32, or bfloat16/float16 autocast on CUDA", read_only=True),
    Param("compile", False, "torch.compile the image encoder (slow first frame)", read_only=True),
    Param("image_size", 1024, "SAM 2 input size: 1024, 512 or 256 (faster, coarser)", read_only=True,
          int_range=(128, 2048)),
    Param("mode", "track", "track: SAM 2 memory across frames; image: each frame on its own"),
    Param("max_objects", 16, "most objects tracked at once", int_range=(1, 255)),
    Param("batch_objects", True, "track objects with the same memory layout in one batched SAM 2 step "
          "(false: Meta's object-by-object loop, the reference)"),
    Param("max_cond_frames", 8, "prompted frames kept per tracked object", read_only=True,
          int_range=(1, 64)),
    Param("compressed", False, "subscribe to image/compressed (jpeg/png) instead of image",
          read_only=True),
    Param("image_qos", "sensor_data", "image subscription QoS: sensor_data or reliable", read_only=True),
    Param("image_qos_depth", 1, "image subscription queue depth", read_only=True, int_range=(1, 100)),
    Param("score_threshold", 0.0, "masks with a lower predicted IoU are reported not visible",
          float_range=(0.0, 1.0)),
    Param("contour_epsilon", 1.0, "contour simplification tolerance in pixels (0: every vertex)",
          float_range=(0.0, 100.0)),
    Param("min_area", 0.0, "regions and holes smaller than this (pixels) have no contour",
          float_range=(0.0, 1e9)),
    Param("mask_encoding", "mono8", "label image: mono8 (ids up to 255) or 16UC1"),
    Param("publish_overlay", True, "publish ~/overlay while someone subscribes"),
    Param("recent_frames", 4, "recent frames kept for prompts stamped for them", read_only=True,
          int_range=(1, 64)),
    Param("autostart", True, "configure and activate without a lifecycle manager", read_only=True),
    Param("max_image_pixels", 16_000_000, "larger images (raw, compressed, mask prompts) are refused "
          "before decoding, pixels", int_range=(1, 1_000_000_000)),
    Param("max_prompt_points", 64, "prompts with more points are refused", int_range=(1, 4096)),
    Param("max_queued_requests", 16, "prompts and service calls waiting for the worker; more are "
          "refused at once", int_range=(1, 1000)),
    Param("requests_per_frame", 2, "requests the worker runs before a waiting camera frame",
          int_range=(1, 100)),
    Param("request_timeout_s", 10.0, "a service call not started by then is cancelled and answered "
          "failed, never applied later", float_range=(0.1, 3600.0)),
    Param("prompt_max_age_s", 0.0, "prompts stamped this long before the newest frame are refused "
          "(0: any stamp from the oldest kept frame on)", float_range=(0.0, 3600.0)),
    Param("depth", False, "3D from a registered depth image: subscribe to depth, depth/camera_info and "
          "camera_info; publish ~/points, ~/markers (and ~/detections_3d with vision_msgs)", read_only=True),
    Param("depth_max_age_ms", 50.0, "the depth frame closest in stamp to a colour frame is used when "
          "within this; else that frame is 2D only", float_range=(0.0, 10_000.0)),
    Param("depth_erode_px", 2, "the mask shrinks by this before depth is sampled (depth at borders "
          "mixes object and background)", int_range=(0, 50)),
    Param("depth_min_pixels", 10, "fewer valid depth readings on an object: no 3D", int_range=(1, 1_000_000)),
    Param("cloud_voxel_size", 0.01, "~/points keeps one averaged point per object per voxel of this "
          "side, metres (0: every point)", float_range=(0.0, 10.0)),
    Param("cloud_rgb", True, "~/points carries each point's colour (rgb field)"),
    Param("everything_points_per_side", 32, "~/segment_everything: a grid of N x N point prompts",
          int_range=(1, 64)),
    Param("everything_points_per_batch", 64, "~/segment_everything: points per batch (one discovery step)",
          int_range=(1, 4096)),
    Param("everything_pred_iou_thresh", 0.8, "~/segment_everything: keep masks SAM 2 scores at least this",
          float_range=(0.0, 1.0)),
    Param("everything_stability_score_thresh", 0.95, "~/segment_everything: keep masks at least this stable",
          float_range=(0.0, 1.0)),
    Param("everything_box_nms_thresh", 0.7, "~/segment_everything: box IoU above which the lower-scoring "
          "mask is a duplicate", float_range=(0.0, 1.0)),
    Param("everything_min_region_area", 0, "~/segment_everything: islands and holes smaller than this "
          "(pixels) are removed from masks", int_range=(0, 1_000_000)),
    Param("discover_period_s", 0.0, "track mode: every this many seconds, segment everything on the newest "
          "frame and track what no object covers, labelled unknown (0: off)", float_range=(0.0, 3600.0)),
    Param("discover_batches_per_frame", 1, "discovery decodes this many point batches after each frame, so it "
          "never holds the camera up for long", int_range=(1, 4096)),
    Param("discover_max_objects", 4, "discovery: most objects labelled unknown tracked at once; discovery "
          "also always leaves one of max_objects free for a user's prompt", int_range=(0, 255)),
    Param("discover_min_area", 400, "discovery: smaller proposals are not tracked, pixels", int_range=(0, 100_000_000)),
    Param("discover_max_overlap", 0.5, "discovery: a proposal with more than this share of its pixels on a "
          "tracked (or just accepted) object is not new", float_range=(0.0, 1.0)),
    Param("detections_timeout_s", 0.0, "image mode: detector boxes are dropped when no detection "
          "array came for this long (0: keep them)", float_range=(0.0, 3600.0)),
)
DEFAULTS = {param.name: param.default for param in PARAMS}


@dataclass(frozen=True)
class NodeConfig:
    """Validated parameter values."""

    values: dict

    @property
    def model_spec(self) -> ModelSpec:
        v = self.values
        if not v["checkpoint"]:
            raise ValueError("no checkpoint given: set the `checkpoint` parameter to Meta's "
                             "SAM 2.1 .pt file (see README.md)")
        return ModelSpec(name=v["model"], checkpoint=v["checkpoint"], device=v["device"],
                         precision=v["precision"], compile=v["compile"], image_size=v["image_size"])

    @property
    def output(self) -> OutputSettings:
        v = self.values
        return OutputSettings(score_threshold=v["score_threshold"], contour_epsilon=v["contour_epsilon"],
                              min_area=v["min_area"], mask_encoding=v["mask_encoding"],
                              depth_erode_px=v["depth_erode_px"], depth_min_pixels=v["depth_min_pixels"])


def validate(values: dict) -> NodeConfig:
    """Check values that a range cannot express; raise ValueError saying which and why."""
    choices = {"mode": ("track", "image"), "image_qos": ("sensor_data", "reliable"),
               "mask_encoding": ("mono8", "16UC1"), "precision": tuple(PRECISIONS),
               "model": MODEL_NAMES}
    for name, allowed in choices.items():
        if values[name] not in allowed:
            raise ValueError(f"{name} '{values[name]}' is not one of: {', '.join(allowed)}")
    if values["image_size"] % 32:
        raise ValueError(f"image_size must be a multiple of 32, got {values['image_size']}")
    if values["mask_encoding"] == "mono8" and values["max_objects"] > 255:
        raise ValueError("mask_encoding mono8 holds ids up to 255: lower max_objects or use 16UC1")
    return NodeConfig(dict(values))


def refuse_or_accept(error: Exception | None) -> SetParametersResult:
    """Answer a run-time parameter change."""
    return SetParametersResult(successful=error is None, reason="" if error is None else str(error))
