"""sam2_segmenter_node: camera images and prompts in, tracked masks and contours out.

The node is the hall: it builds its collaborators, starts and stops them with the lifecycle,
and releases them; it holds no frame, object or publisher of its own (docs/design.md).

- configure: the model, the tracking session (the worker's state), outputs, diagnostics and
  the services (requests); activate: the worker and delivery threads and the subscriptions (inputs).
- Every output describes exactly the frame whose header it carries, under the settings that
  frame was processed with; no message, flood or transition can exhaust, stall or kill the node;
  every request gets one true answer (a refused or failed one changed nothing, a cancelled one
  is never applied later).
"""
from __future__ import annotations

import gc
import itertools
import threading

from rcl_interfaces.msg import SetParametersResult
from rclpy.exceptions import ParameterException
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from sam2_ros.core import settings as S
from sam2_ros.core.export import ExportError
from sam2_ros.core.model import CheckpointError, LoadedModel, load_model
from sam2_ros.core.session import TrackingSession
from sam2_ros.core.tracker import HOLE_FILLING, HOLE_FILLING_NOTE
from sam2_ros.core.work_queue import WorkQueue
from sam2_ros.ros.delivery import Delivery
from sam2_ros.ros.depth import DepthInput
from sam2_ros.ros.diagnostics import Counts, Diagnostics
from sam2_ros.ros.inputs import Inputs
from sam2_ros.ros.outputs import Outputs
from sam2_ros.ros.params import InvalidParameters, descriptor, refuse_or_accept, unknown_parameters
from sam2_ros.ros.process import ProcessTuning
from sam2_ros.ros.requests import Requests
from sam2_ros.ros.worker import Worker


class Sam2SegmenterNode(LifecycleNode):
    """The lifecycle node: configure loads SAM 2, activate starts processing.

    It leaves the process as it found it; `tuning` (main()'s) is told when a model is loaded
    or released, for process-wide tuning that only the process owner may do.
    """

    def __init__(self, *, tuning: ProcessTuning | None = None, **kwargs) -> None:
        super().__init__("sam2_segmenter_node", **kwargs)
        self._tuning = tuning
        self.finished = threading.Event()  # set by the shutdown transition: the process should exit
        self._config: S.NodeConfig | None = None  # replaced whole, never changed: each frame takes one
        self._admitting = threading.Lock()
        self._queue = WorkQueue(S.RequestParams.max_queued, S.RequestParams.per_frame)
        self.depth = DepthInput()
        self._arrivals = itertools.count()  # camera frames' arrival numbers (recent frames are found by them)
        self.model: LoadedModel | None = None
        self.session: TrackingSession | None = None
        self.outputs: Outputs | None = None
        self.diagnostics: Diagnostics | None = None
        self.inputs: Inputs | None = None
        self._requests: Requests | None = None
        self._delivery: Delivery | None = None
        self._worker: Worker | None = None
        self._timer = None
        try:  # the values given at start-up: by rclpy against each descriptor, then every rule of the settings
            for param in S.PARAMS:
                self.declare_parameter(param.name, param.default, descriptor(param))
            autostart = self.config().lifecycle.autostart
        except (ParameterException, ValueError) as error:
            self.destroy_node()  # whoever gets the error has no node to destroy
            raise InvalidParameters.from_error(error) from None
        self.add_on_set_parameters_callback(self._on_set_parameters)
        if unknown := unknown_parameters(getattr(self, "_parameter_overrides", {}), self.has_parameter):
            self.get_logger().warning(f"ignored: {unknown}")
        if autostart:
            if self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
                self.trigger_activate()

    # ----- what others may ask -----
    def config(self) -> S.NodeConfig:
        """Return the settings in force now (one immutable snapshot)."""
        return self._config if self._config is not None else S.NodeConfig.from_values(self._values())

    def counts(self) -> Counts:
        """Return the /diagnostics counters now (zero before configure)."""
        return self.diagnostics.stats.snapshot() if self.diagnostics is not None else Counts()

    def lifecycle_state(self) -> int:
        """Return the current lifecycle state's id (lifecycle_msgs/State.PRIMARY_STATE_*)."""
        return self._state_machine.current_state[0]

    def queued_requests(self) -> int:
        return self._queue.pending()

    def worker_alive(self) -> bool:
        return self._worker is not None and self._worker.alive()

    # ----- parameters -----
    def _values(self) -> dict:
        return {param.name: self.get_parameter(param.name).value for param in S.PARAMS}

    def _on_set_parameters(self, changes) -> SetParametersResult:
        """Validate run-time changes; the session admits them against its objects, never waiting for the worker."""
        with self._admitting:  # two threads setting parameters: the session and the node take the same settings
            values = {**self._values(), **{p.name: p.value for p in changes}}
            try:
                config = S.NodeConfig.from_values(values)
                if self.session is not None:
                    self.session.admit(config)
            except ValueError as error:
                return refuse_or_accept(error)
            if self._config is not None:
                self._config = config
        self._queue.set_limits(config.requests.max_queued, config.requests.per_frame)
        self.depth.set_window(config.depth.window_s)
        return refuse_or_accept(None)

    # ----- lifecycle -----
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            config = S.NodeConfig.from_values(self._values())
            self.model = load_model(config.model.spec())
            if self.model.exported is not None:  # graphs padded for fewer prompted frames than kept: refused now
                self.model.exported.check(self.model.spec, config.model.max_cond_frames)
        except (CheckpointError, ExportError, ValueError) as error:
            self.get_logger().error(f"cannot configure: {error}")
            return TransitionCallbackReturn.FAILURE
        except Exception as error:  # whatever else loading raises: the transition fails, saying so
            self.get_logger().error(f"cannot configure: loading the model failed: {type(error).__name__}: {error}")
            self.model = None
            return TransitionCallbackReturn.FAILURE
        with self._admitting:  # a run-time parameter set while the model loaded is in force too
            config = S.NodeConfig.from_values(self._values())
            self.session = TrackingSession(self.model, config, self._report)
            self._config = config
        self._queue.set_limits(config.requests.max_queued, config.requests.per_frame)
        self.depth.set_window(config.depth.window_s)
        self.diagnostics = Diagnostics(self, config.output.diagnostics_fqn)
        self.outputs = Outputs(self, config)
        self._delivery = Delivery(self, self.outputs, self.depth, self.diagnostics)
        self._worker = Worker(self, self._queue, self.session, self.outputs, self._delivery, self.diagnostics,
                              self.config)
        self._requests = Requests(self, self._queue, self.session, self._worker, self.outputs, self.diagnostics,
                                  self.config)
        if self._tuning is not None:
            self._tuning.model_loaded()
        self.get_logger().info(f"loaded {self.model.spec.name} on {self.model.device} in {self.model.spec.precision} "
                               f"at input size {self.model.image_size}, mode {config.tracking.mode}")
        if not HOLE_FILLING:
            self.get_logger().info(HOLE_FILLING_NOTE, once=True)
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.depth.expect()
        self._delivery.start()
        self._worker.start()
        self.inputs = Inputs(self, self._config, self._queue, self.session, self._worker, self.diagnostics,
                             self.depth, self.config, self._arrivals)
        self._timer = self.create_timer(1.0, self._tick, callback_group=None)
        self.get_logger().info(f"active: listening on {self.resolve_topic_name(self.inputs.image_topic)}")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.stop("node deactivated")
        release_cuda_cache()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.stop("node shutting down")
        self._release()
        self.finished.set()
        return TransitionCallbackReturn.SUCCESS

    def stop(self, reason: str = "node stopped") -> None:
        """Stop the worker after its current slice, and the subscriptions.

        Queued requests are answered with `reason`; objects and frames stay for the next activate.
        """
        if self._delivery is not None:
            self._delivery.hurry()  # frames waiting for depth go out now
        if self._worker is not None:
            answered = self._worker.stop(reason)
            if answered:
                self.get_logger().info(f"{reason}: answered {answered} queued request(s) with failure")
        if self._delivery is not None:
            self._delivery.stop()
        if self.inputs is not None:
            self.inputs.close()
            self.inputs = None
        if self._timer is not None:
            self.destroy_timer(self._timer)
            self._timer = None

    def destroy_node(self) -> None:
        """Stop the worker and free the model and its threads, whatever state the node is in."""
        self.stop("node destroyed")
        self._release()
        super().destroy_node()

    def _release(self) -> None:
        """Drop the model, services and publishers; on CUDA hand the memory back to the driver."""
        for room in (self._requests, self.outputs, self.diagnostics):
            if room is not None:
                room.close()
        if self.session is not None:
            self.session.close()
        released = self.model is not None
        self._requests = self.outputs = self.diagnostics = self.session = self._worker = self._delivery = None
        self.model = self._config = None
        if released and self._tuning is not None:
            self._tuning.model_released()
        gc.collect()  # futures and closures in reference cycles can still hold the model's tensors
        release_cuda_cache()

    def _report(self, message: str, error: Exception | str | None) -> None:
        """Log the session's notes: a refusal of that kind when `error` is given, else an information line."""
        if error is None:
            self.get_logger().info(message)
        else:
            self.diagnostics.reject(message, error)

    def _tick(self) -> None:
        """Once a second: diagnostics, and image mode's detector boxes expire when detections stop."""
        config, inputs, session, diagnostics = self._config, self.inputs, self.session, self.diagnostics
        if config is None or session is None or diagnostics is None:
            return
        if inputs is not None and not config.tracking.tracks:
            inputs.expire_detections(config.tracking.detections_timeout_s)
        diagnostics.publish(device=str(self.model.device) if self.model else "", objects=len(session.object_labels()),
                            queued=self._queue.pending(), depth=config.depth.enabled, discovery=config.discovery.on,
                            text=session.text_phrases())


def release_cuda_cache() -> None:
    import torch
    if torch.cuda.is_available():
        torch.cuda.empty_cache()

