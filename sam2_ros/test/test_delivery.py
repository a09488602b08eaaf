"""The delivery: one thread publishes each processed frame's outputs, in processing order, answering who waits."""

from conftest import photo
from rosharness import add, box_prompt, header, wait_until


def test_a_caller_whose_result_cannot_be_published_is_told_so_and_the_object_lives_on(running, monkeypatch):
    image = photo("coffee")
    running.peer.publish_rgb(image, header(400))
    running.peer.result_for(header(400))

    def broken(*args, **kwargs):
        raise RuntimeError("no room left on the transport")
    with monkeypatch.context() as patch:
        patch.setattr(running.node.outputs, "publish", broken)
        answer = add(running, box_prompt([100, 50, 400, 300], header(400)))
    assert not answer.success and list(answer.object_ids) == [1]
    assert ("object(s) [1] applied and tracked, but their result was not published: RuntimeError: no room left "
            "on the transport") in answer.message
    counts = wait_until(lambda: (c := running.node.counts()).failed and c, 10, "the failure counted")
    assert counts.failed == 1 and "outputs of frame 400000000000 dropped" in counts.last_error
    running.peer.publish_rgb(image, header(401))
    (obj,) = running.peer.result_for(header(401)).objects
    assert obj.object_id == 1, "the object is tracked on the next frame"


def test_a_frame_whose_latency_is_unknown_is_counted_as_processed_but_not_in_the_latency_percentiles(running):
    """Sim time before its first /clock: the node's clock reads 0, so the frame has no latency to count."""
    from rclpy.parameter import Parameter

    image = photo("coffee")
    running.peer.publish_rgb(image, header(410))
    running.peer.result_for(header(410))
    before = wait_until(lambda: (c := running.node.counts()).processed and c, 10, "the first frame counted")
    running.node.set_parameters([Parameter("use_sim_time", value=True)])  # no /clock published in this test
    wait_until(lambda: running.node.get_clock().ros_time_is_active, 10, "sim time on the node's clock")
    running.peer.publish_rgb(image, header(411))
    running.peer.result_for(header(411))
    after = wait_until(lambda: (c := running.node.counts()).processed == before.processed + 1 and c, 10,
                       "the second frame counted")
    assert after.latency_ms == before.latency_ms  # the frame before's latency, nothing for this one
