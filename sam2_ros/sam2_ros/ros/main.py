"""The process around the node: entry point, signals, spinning, and process-wide tuning.

The node class is a library and leaves the process as it found it; what only the process
owner may do (signal handlers, thread and GIL tuning) happens here.
"""
from __future__ import annotations

import signal
import sys
import threading
from typing import Callable

import rclpy
from rclpy.exceptions import InvalidHandle
from rclpy.executors import Executor, ExternalShutdownException, MultiThreadedExecutor
from rclpy.signals import SignalHandlerOptions

from sam2_ros.core import settings as S
from sam2_ros.ros.node import Sam2SegmenterNode
from sam2_ros.ros.params import InvalidParameters
from sam2_ros.ros.process import ProcessTuning


def spin(executor: Executor, until: Callable[[], bool]) -> None:
    """Spin until the context shuts down or `until()`, outliving rclpy's races.

    The executor wakes every 0.1 s to ask `until` (and lets Python run signal handlers). A
    transition that destroys endpoints while the executor builds its wait set makes rclpy raise
    InvalidHandle (ros2/rclpy#1206, #1142); the executor recovers on the next call, so spinning
    resumes instead of leaving the node deaf. Shut the executor down only once this has returned:
    its shutdown() destroys the wait set's guard conditions under a thread still spinning, which
    then fails with "wait set is empty" (seen in CI).
    """
    while executor.context.ok() and not until():
        try:
            executor.spin_once(timeout_sec=0.1)
        except InvalidHandle:
            continue
        except ExternalShutdownException:
            return


def usage() -> str:
    """Return what `sam2_segmenter_node --help` prints: how to run it, its topics and parameters."""
    lines = [
        "usage: ros2 run sam2_ros sam2_segmenter_node --ros-args -p checkpoint:=FILE.pt [-p NAME:=VALUE ...]",
        "           [--params-file sam2_segmenter.yaml] [-r image:=/camera/image_raw] [-r __ns:=/left]",
        "",
        "SAM 2 on a camera stream: prompts (prompt, clicked_point, clicked_pixel, detections, ~/add_objects)",
        "in; tracked masks out on ~/result, ~/mask, ~/overlay and /diagnostics. See README.md.",
        "",
        "parameters, by section:",
    ]
    for section, params in S.SECTIONS.items():
        lines.append(f"  {section}:")
        for param in params.params():
            fixed = " (read-only)" if param.read_only else ""
            lines.append(f"    {param.name:<22} {param.default!r:<20} {param.description}{fixed}")
    return "\n".join(lines)


def main(args: list[str] | None = None) -> int:
    """Spin the node until Ctrl-C, SIGTERM or a lifecycle shutdown, then exit 0 (1: a parameter given is invalid).

    The process owns the signals: on Ctrl-C the worker stops before the ROS context goes,
    so no frame in flight publishes on a dead context.
    """
    argv = sys.argv if args is None else args
    own = argv[1:argv.index("--ros-args")] if "--ros-args" in argv else argv[1:]
    if {"-h", "--help"} & set(own):
        print(usage())
        return 0
    try:
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    except RuntimeError as error:  # rcl's: a parameter file or --ros-args rule it cannot read
        print(f"sam2_segmenter_node: cannot start ROS: {error}", file=sys.stderr)
        return 1
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    node = None
    executor = MultiThreadedExecutor(num_threads=4)  # services wait on the worker; keep threads for the rest
    try:
        with ProcessTuning() as tuning:
            try:
                node = Sam2SegmenterNode(tuning=tuning)
                executor.add_node(node)
                spin(executor, until=lambda: stop.is_set() or node.finished.is_set())
            except InvalidParameters as error:  # one line that says what to fix, no traceback
                rclpy.logging.get_logger("sam2_segmenter_node").error(str(error))
                return 1
            finally:
                if node is not None:
                    node.stop("node exiting")
                executor.shutdown()
                if node is not None:
                    node.destroy_node()
                rclpy.try_shutdown()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
