"""What /diagnostics says: a pure function of counters written by every thread; refusals apart from failures."""
import threading

import pytest
from diagnostic_msgs.msg import DiagnosticStatus

from sam2_ros.core.frames import FrameNotKept
from sam2_ros.core.prompts import PromptError
from sam2_ros.core.work_queue import Refused
from sam2_ros.ros.conversions import ImageError, ImageTooLarge
from sam2_ros.ros.diagnostics import Counts, Stats, refusal_kind, status


def values_of(stat: DiagnosticStatus) -> dict[str, str]:
    return {kv.key: kv.value for kv in stat.values}


def test_a_node_that_only_saw_bad_input_is_ok_and_says_how_much_by_kind():
    stats = Stats()
    stats.count(received=5, skipped=1)
    stats.refusal("bad image", "image dropped: unsupported image encoding 'yuv999'")
    stats.refusal("bad image", "image dropped: unsupported image encoding 'yuv998'")
    stats.refusal("bad prompt", "prompt refused: box has no area")
    stat = status("sam2_segmenter_node", stats.snapshot(), device="cpu", objects=2, queued=0, depth=False,
                  discovery=False)
    values = values_of(stat)
    assert stat.level == DiagnosticStatus.OK and stat.name == "sam2_segmenter_node: processing"
    assert values["inputs rejected"] == "3" and values["model failures"] == "0"
    assert values["refused: bad image"] == "2" and values["refused: bad prompt"] == "1"
    assert values["last error"] == "prompt refused: box has no area"
    assert values["frames received"] == "5" and values["frames skipped"] == "1"
    assert "frames with 3D" not in values and "discovery passes" not in values


def test_a_model_failure_warns_and_percentiles_are_over_the_frames_timings():
    stats = Stats()
    for model_ms, latency_ms in ((100.0, 150.0), (300.0, 350.0), (200.0, 250.0)):
        stats.frame_done(model_ms, latency_ms, with_3d=True)
    stats.failure("model failed on frame 7: RuntimeError: out of memory; frame dropped")
    values = values_of(stat := status("n", stats.snapshot(), device="cuda:0", objects=0, queued=1, depth=True,
                                      discovery=True))
    assert stat.level == DiagnosticStatus.WARN and stat.message == "model failures seen"
    assert values["model p50 ms"] == "200.0" and values["latency p50 ms"] == "250.0"
    assert float(values["latency p95 ms"]) == pytest.approx(340.0)  # numpy's linear rule: 250 + 0.9 * 100
    assert values["frames processed"] == "3" and values["frames with 3D"] == "3" and values["requests queued"] == "1"
    assert values["discovery passes"] == "0"


def test_no_timings_yet_read_nan_not_an_error():
    values = values_of(status("n", Counts(), device="", objects=0, queued=0, depth=False, discovery=False))
    assert values["latency p50 ms"] == "nan" and values["model p50 ms"] == "nan"


@pytest.mark.parametrize("error, kind", [
    (ImageTooLarge("40000 x 40000"), "image too large"), (ImageError("unsupported encoding"), "bad image"),
    (Refused("queue full"), "request not queued"), (FrameNotKept("older than every kept frame"), "frame not kept"),
    (PromptError("box has no area"), "bad prompt")])
def test_each_refusal_goes_to_its_own_counter(error, kind):
    assert refusal_kind(error) == kind


def test_counters_written_by_many_threads_lose_nothing_and_a_snapshot_is_a_copy():
    stats = Stats()

    def count():
        for _ in range(1000):
            stats.count(received=1)
            stats.refusal("bad prompt", "x")
    threads = [threading.Thread(target=count) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    snapshot = stats.snapshot()
    assert snapshot.received == 4000 and snapshot.rejected == 4000 and snapshot.refused["bad prompt"] == 4000
    snapshot.refused["bad prompt"] = 0
    assert stats.snapshot().refused["bad prompt"] == 4000



def test_the_status_is_named_by_the_node_name_or_with_diagnostic_updater_use_fqn_by_its_namespace_too():
    """Two cameras' nodes in namespaces front and wrist: only the fully qualified name tells them apart."""
    import os
    import time

    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor

    from sam2_ros.ros.diagnostics import Diagnostics

    context = rclpy.Context()
    rclpy.init(context=context)
    executor = SingleThreadedExecutor(context=context)
    try:
        front = f"front{os.getpid()}"  # other tests' nodes publish on /diagnostics in this ROS domain too
        node = rclpy.create_node("sam2_segmenter_node", namespace=front, context=context)
        reader = rclpy.create_node(f"diagnostics_reader_{os.getpid()}", context=context)
        names = set()
        reader.create_subscription(DiagnosticArray, "/diagnostics",
                                   lambda msg: names.update(s.name for s in msg.status), 10)
        executor.add_node(reader)
        by_name, fully_qualified = Diagnostics(node), Diagnostics(node, fully_qualified=True)
        wanted = {"sam2_segmenter_node: processing", f"/{front}/sam2_segmenter_node: processing"}
        deadline = time.monotonic() + 30
        while not wanted <= names and time.monotonic() < deadline:
            for diagnostics in (by_name, fully_qualified):
                diagnostics.publish(device="cpu", objects=0, queued=0, depth=False, discovery=False)
            executor.spin_once(timeout_sec=0.1)
        assert wanted <= names, names
        executor.shutdown()
        reader.destroy_node()
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
