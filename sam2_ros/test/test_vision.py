"""vision_msgs outputs: what each message carries worked by hand, the real classes where vision_msgs is installed."""
import pytest
from geometry_msgs.msg import Point
from sensor_msgs.msg import RegionOfInterest

from rosharness import NODE, Running, add, box_prompt, header, wait_until
from sam2_ros.ros import vision
from sam2_ros_interfaces.msg import SegmentationResult, SegmentedObject

needs_vision_msgs = pytest.mark.skipif(not vision.available(), reason="vision_msgs is not installed here "
                                       "(it is on robots with ROS 2 desktop)")


def cup() -> SegmentedObject:
    return SegmentedObject(object_id=3, label="cup", score=0.75, visible=True, has_3d=True,
                           box=RegionOfInterest(x_offset=10, y_offset=20, width=4, height=6),
                           min_3d=Point(x=-0.1, y=0.2, z=1.0), max_3d=Point(x=0.3, y=0.25, z=1.5))


def test_the_2d_box_is_the_mask_box_in_pixel_edge_coordinates():
    # columns 10..13 and rows 20..25: edges at 10 and 14, 20 and 26
    assert vision.box_2d(cup()) == ((12.0, 23.0), (4.0, 6.0))


def test_the_3d_box_is_the_middle_and_size_of_the_extent():
    centre, size = vision.box_3d(cup())
    assert centre == pytest.approx((0.1, 0.225, 1.25)) and size == pytest.approx((0.4, 0.05, 0.5))


def test_every_object_names_its_label_value_and_unlabelled_ones_are_named_by_id():
    result = SegmentationResult(objects=[cup(), SegmentedObject(object_id=7)])
    assert vision.label_map(result) == ((3, "cup"), (7, "object 7"))


def result_with_a_hidden_and_a_flat_object() -> SegmentationResult:
    """cup: visible with 3D; 4: hidden; 9: visible, unlabelled, no depth readings on it."""
    flat = SegmentedObject(object_id=9, score=0.5, visible=True,
                           box=RegionOfInterest(x_offset=0, y_offset=1, width=3, height=2))
    return SegmentationResult(header=header(5, frame_id="color"), depth_header=header(5, 2, frame_id="depth"),
                              objects=[cup(), SegmentedObject(object_id=4, label="gone", visible=False), flat])


def test_the_2d_detections_are_the_visible_objects_in_the_colour_frame():
    result = result_with_a_hidden_and_a_flat_object()
    assert vision.detections_2d(result) == [
        vision.Detection(header(5, frame_id="color"), "3", "cup", 0.75, (12.0, 23.0), (4.0, 6.0)),
        vision.Detection(header(5, frame_id="color"), "9", "object 9", 0.5, (1.5, 2.0), (3.0, 2.0))]


def test_the_3d_detections_are_the_objects_with_3d_in_the_depth_frame():
    (found,) = vision.detections_3d(result_with_a_hidden_and_a_flat_object())
    assert (found.header, found.id, found.class_id, found.score) == (header(5, 2, frame_id="depth"), "3", "cup", 0.75)
    assert found.centre == pytest.approx((0.1, 0.225, 1.25)) and found.size == pytest.approx((0.4, 0.05, 0.5))


def test_3d_outputs_without_a_paired_depth_frame_carry_the_colour_frames_header():
    paired = result_with_a_hidden_and_a_flat_object()
    assert vision.header_3d(paired) == header(5, 2, frame_id="depth")
    unpaired = SegmentationResult(header=header(5, frame_id="color"))
    assert vision.header_3d(unpaired) == header(5, frame_id="color")


@needs_vision_msgs
def test_the_real_messages_carry_id_box_hypothesis_and_the_results_headers():
    hidden = SegmentedObject(object_id=4, visible=False)
    result = SegmentationResult(header=header(5, frame_id="color"), depth_header=header(5, frame_id="depth"),
                                objects=[cup(), hidden])
    (det,) = vision.detection_2d_array(result).detections
    assert det.id == "3" and det.header == result.header
    assert (det.bbox.center.position.x, det.bbox.center.position.y, det.bbox.size_x, det.bbox.size_y) == \
        (12.0, 23.0, 4.0, 6.0)
    assert det.results[0].hypothesis.class_id == "cup" and det.results[0].hypothesis.score == 0.75
    array_3d = vision.detection_3d_array(result)
    (det3,) = array_3d.detections
    assert array_3d.header.frame_id == "depth" and det3.id == "3"
    assert det3.bbox.center.position.z == pytest.approx(1.25) and det3.bbox.size.x == pytest.approx(0.4)
    info = vision.label_info(result.header, vision.label_map(result), 0.5)
    assert [(c.class_id, c.class_name) for c in info.class_map] == [(3, "cup"), (4, "object 4")]
    assert info.threshold == 0.5


@needs_vision_msgs
def test_the_node_publishes_detections_and_a_latched_label_info(checkpoint):
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from vision_msgs.msg import Detection2DArray, LabelInfo

    from conftest import photo
    running = Running(checkpoint)
    try:
        detections = []
        running.peer.node.create_subscription(Detection2DArray, f"{NODE}/detections", detections.append, 10)
        wait_until(lambda: running.node.outputs.subscribers("detections"), 30, "the subscription")
        image = photo("astronaut")
        running.peer.publish_rgb(image, header(1))
        running.peer.result_for(header(1))
        assert add(running, box_prompt([100, 50, 400, 480], header(1), label="astronaut")).success
        running.peer.publish_rgb(image, header(2))
        result = running.peer.result_for(header(2))
        found = wait_until(lambda: next((d for d in detections if d.header == header(2)), None), 30, "detections")
        assert [d.id for d in found.detections] == ["1"]
        box = result.objects[0].box
        assert found.detections[0].bbox.size_x == box.width
        labels = []  # a late subscriber still gets the label map: transient local
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        running.peer.node.create_subscription(LabelInfo, f"{NODE}/label_info", labels.append, latched)
        info = wait_until(lambda: labels and labels[-1], 30, "label info")
        assert [(c.class_id, c.class_name) for c in info.class_map] == [(1, "astronaut")]
    finally:
        running.close()


@needs_vision_msgs
def test_a_real_detection2darray_on_the_detections_topic_becomes_a_labelled_box_prompt(checkpoint, small_model):
    import numpy as np
    from vision_msgs.msg import Detection2D, Detection2DArray, ObjectHypothesisWithPose

    from conftest import photo
    from rosharness import full_mask
    from sam2_ros.core.prompts import Prompt
    from sam2_ros.core.segmenter import Segmenter
    running = Running(checkpoint, mode="image")
    try:
        detector = running.peer.node.create_publisher(Detection2DArray, "detections", 10)
        wait_until(lambda: detector.get_subscription_count() > 0, 30, "the node's detections subscription")
        running.peer.publish_rgb(photo("astronaut"), header(1))
        running.peer.result_for(header(1))
        found = Detection2D()
        found.bbox.center.position.x, found.bbox.center.position.y = 250.0, 265.0  # box 100..400 x 50..480
        found.bbox.size_x, found.bbox.size_y = 300.0, 430.0
        hypothesis = ObjectHypothesisWithPose()
        hypothesis.hypothesis.class_id, hypothesis.hypothesis.score = "astronaut", 0.8
        found.results = [hypothesis]
        detector.publish(Detection2DArray(header=header(1), detections=[found]))
        wait_until(lambda: running.node.session.object_labels(), 30, "the detector's box")
        running.peer.publish_rgb(photo("astronaut"), header(2))
        (obj,) = running.peer.result_for(header(2)).objects
        box = np.array([100, 50, 400, 480], np.float32)
        (expected,) = Segmenter(small_model).segment(photo("astronaut"), [Prompt(object_id=1, box=box)]).objects
        assert obj.label == "astronaut"
        np.testing.assert_array_equal(full_mask(obj, expected.mask.shape), expected.mask)
    finally:
        running.close()
