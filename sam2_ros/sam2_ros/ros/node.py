"""The sam2_segmenter_node: a lifecycle node that owns one SAM 2 model."""
from __future__ import annotations

import sys

import rclpy
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from sam2_ros.core.model import MODEL_NAMES, CheckpointError, ModelSpec, load_model


def _read_only(description: str) -> ParameterDescriptor:
    return ParameterDescriptor(description=description, read_only=True)


class Sam2SegmenterNode(LifecycleNode):
    """Configure loads SAM 2 (failing the transition with the loader's message); cleanup frees it."""

    def __init__(self, **kwargs) -> None:
        super().__init__("sam2_segmenter_node", **kwargs)
        self.declare_parameter("model", "sam2.1_hiera_tiny",
                               _read_only(f"SAM 2 model: {', '.join(MODEL_NAMES)}"))
        self.declare_parameter("checkpoint", "", _read_only("path of Meta's SAM 2 checkpoint (.pt)"))
        self.declare_parameter("device", "auto", _read_only("auto, cpu, cuda or cuda:N"))
        self.declare_parameter("precision", "float32",
                               _read_only("float32, or bfloat16/float16 autocast on CUDA"))
        self.declare_parameter("compile", False, _read_only("torch.compile the image encoder"))
        self.declare_parameter("image_size", 1024, _read_only("SAM 2 input size: 1024, 512 or 256"))
        self.declare_parameter("autostart", True,
                               _read_only("configure and activate without a lifecycle manager"))
        self.model = None
        if self.get_parameter("autostart").value:
            self.trigger_configure()
            if self.model is not None:
                self.trigger_activate()

    def _spec(self) -> ModelSpec:
        value = self.get_parameter
        checkpoint = value("checkpoint").value
        if not checkpoint:
            raise CheckpointError("no checkpoint given: set the `checkpoint` parameter to Meta's "
                                  "SAM 2.1 .pt file (see README.md)")
        return ModelSpec(name=value("model").value, checkpoint=checkpoint,
                         device=value("device").value, precision=value("precision").value,
                         compile=value("compile").value, image_size=value("image_size").value)

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self.model = load_model(self._spec())
        except (CheckpointError, ValueError) as error:
            self.get_logger().error(f"cannot configure: {error}")
            return TransitionCallbackReturn.FAILURE
        self.get_logger().info(f"loaded {self.model.spec.name} on {self.model.device} "
                               f"at input size {self.model.image_size}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.get_logger().info("active")
        return super().on_activate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def _release(self) -> None:
        """Drop the model; on CUDA hand its memory back to the driver."""
        if self.model is not None and self.model.device.type == "cuda":
            import torch
            self.model = None
            torch.cuda.empty_cache()
        self.model = None


def main(args: list[str] | None = None) -> int:
    """Spin the node until Ctrl-C or an external shutdown, then exit cleanly."""
    rclpy.init(args=args)
    node = None
    executor = MultiThreadedExecutor()
    try:
        node = Sam2SegmenterNode()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass  # Ctrl-C or `ros2 lifecycle set ... shutdown`: a normal way to stop
    finally:
        executor.shutdown()
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
