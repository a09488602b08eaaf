"""The subscriptions: what each input topic turns into, and what it refuses, saying why."""
from geometry_msgs.msg import Point32, PointStamped

from conftest import photo
from rosharness import header, wait_until
from sam2_ros_interfaces.msg import Prompt as PromptMsg


def test_a_3d_click_before_any_camera_info_is_refused_naming_the_remap_to_add(running):
    clicks = running.peer.node.create_publisher(PointStamped, "clicked_point", 10)
    wait_until(lambda: clicks.get_subscription_count() > 0, 30, "the clicked_point subscription")
    clicks.publish(PointStamped(header=header(0, frame_id="camera_optical")))
    counts = wait_until(lambda: (c := running.node.counts()).rejected and c, 30, "the refusal")
    assert counts.last_error == ("clicked point refused: no camera_info received yet (remap camera_info to the "
                                 "camera's, e.g. -r camera_info:=/camera/color/camera_info)")
    assert running.node.queued_requests() == 0


def test_a_prompt_with_too_many_points_is_refused_on_arrival_and_the_camera_goes_on(running):
    prompts = running.peer.node.create_publisher(PromptMsg, "prompt", 10)
    wait_until(lambda: prompts.get_subscription_count() > 0, 30, "the prompt subscription")
    prompts.publish(PromptMsg(header=header(0), object_id=-1, points=[Point32(x=10.0, y=10.0)] * 65,
                              point_labels=[1] * 65))  # max_prompt_points is 64
    counts = wait_until(lambda: (c := running.node.counts()).rejected and c, 30, "the refusal")
    assert "prompt refused" in counts.last_error and "65" in counts.last_error and "64" in counts.last_error
    running.peer.publish_rgb(photo("coffee"), header(600))
    assert running.peer.result_for(header(600)).objects == []
