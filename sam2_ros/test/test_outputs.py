"""A frame's outputs: timing fields in the units the message states, and nothing sent under another frame's header."""
import math
import time

import numpy as np
import pytest
from rclpy.parameter import Parameter
from rclpy.time import Duration
from rosgraph_msgs.msg import Clock

from rosharness import Running, add, box_prompt, header, wait_until
from sam2_ros.core.encoding import EncodedFrame
from sam2_ros.core.frames import RecentFrame
from sam2_ros.ros.results import FrameMismatch
from sam2_ros.tools.scenes import object_box, pan_clip


@pytest.fixture(scope="module")
def running(checkpoint):
    node = Running(checkpoint)
    yield node
    node.close()


def test_timing_fields_are_milliseconds_as_a_wall_clock_outside_the_node_measures_them(running):
    """SegmentationResult.msg: encode, decode, post-processing and latency in ms; the peer's stopwatch bounds them."""
    images, truths = pan_clip(2)
    running.peer.publish_rgb(images[0], header(30))
    running.peer.result_for(header(30))
    assert add(running, box_prompt(object_box(truths[0]), header(30))).success
    stamp = (running.peer.node.get_clock().now() - Duration(seconds=0.25)).to_msg()  # stamped 250 ms ago
    sent_at = time.monotonic()
    running.peer.publish_rgb(images[1], header(stamp.sec, stamp.nanosec))
    result = running.peer.result_for(header(stamp.sec, stamp.nanosec))
    round_trip_ms = (time.monotonic() - sent_at) * 1e3
    assert len(result.objects) == 1
    # a SAM 2 image encoder at 256 takes milliseconds, not microseconds; nothing takes longer than the round trip
    assert 1.0 < result.encode_ms and 0.5 < result.decode_ms and 0.0 < result.postprocess_ms
    assert result.encode_ms + result.decode_ms + result.postprocess_ms < round_trip_ms
    assert 250.0 <= result.latency_ms <= 250.0 + round_trip_ms + 50.0  # 50 ms: the clocks' reads apart


def steady_counts(running):
    """The node's counters once two reads 0.3 s apart agree (a frame is counted just after its result goes out)."""
    def unchanged():
        first = running.node.counts()
        time.sleep(0.3)
        return first if running.node.counts() == first else None
    return wait_until(unchanged, 10, "the counters to settle")


def counted_frame(running, processed: int):
    return wait_until(lambda: (c := running.node.counts()).processed == processed and c, 10,
                      f"frame {processed} counted")


def test_under_sim_time_latency_is_on_the_bag_clock_and_unknown_before_its_first_clock_message(running):
    """A bag replayed with use_sim_time: latency reads /clock; before any /clock it is NaN, not -stamp."""
    images, _ = pan_clip(1)
    clock = running.peer.node.create_publisher(Clock, "/clock", 10)
    running.node.set_parameters([Parameter("use_sim_time", value=True)])
    try:
        wait_until(lambda: running.node.get_clock().ros_time_is_active, 10, "sim time on the node's clock")
        settled = steady_counts(running)  # the earlier tests' frames all counted
        running.peer.publish_rgb(images[0], header(500))
        assert math.isnan(running.peer.result_for(header(500)).latency_ms)  # the clock reads 0: not 0 - 500 s
        counts = counted_frame(running, settled.processed + 1)  # counted after its result is out
        assert counts.latency_ms == settled.latency_ms  # nor counted in /diagnostics' percentiles

        clock.publish(Clock(clock=header(1000).stamp))  # sim time stands still at 1000 s until the next /clock
        wait_until(lambda: running.node.get_clock().now().nanoseconds == 1000 * 10**9, 10, "the /clock message")
        running.peer.publish_rgb(images[0], header(999, 750_000_000))
        assert running.peer.result_for(header(999, 750_000_000)).latency_ms == 250.0
        assert counted_frame(running, settled.processed + 2).latency_ms == [*settled.latency_ms, 250.0]
    finally:
        running.node.set_parameters([Parameter("use_sim_time", value=False)])
        running.peer.node.destroy_publisher(clock)


def test_a_result_built_for_another_frame_is_withheld_and_nothing_is_published(running):
    node = running.node
    frame = RecentFrame(seq=1, stamp_ns=41 * 10**9, header=header(41), rgb=np.zeros((240, 320, 3), np.uint8),
                        encoded=EncodedFrame((240, 320), None, 0.0), tracker_index=None)
    before = len(running.peer.results)
    other = node.outputs.builder(header(40), (240, 320), node.config())  # the frame before's
    with pytest.raises(FrameMismatch, match="withheld"):
        node.outputs.publish(frame, [], node.config(), other)
    smaller = node.outputs.builder(header(41), (120, 160), node.config())  # its stamp, another size
    with pytest.raises(FrameMismatch, match="result for a 160x120 frame would carry the header of a 320x240 frame"):
        node.outputs.publish(frame, [], node.config(), smaller)
    time.sleep(0.5)
    assert len(running.peer.results) == before
