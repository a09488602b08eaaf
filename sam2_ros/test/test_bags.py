"""Bags through rosbags: our messages readable as rclpy writes them, and clear refusals before anything is written."""
import pytest
from rclpy.serialization import serialize_message
from sensor_msgs.msg import Image

from sam2_ros.tools.bags import BagError, message_class, typestore, writer
from sam2_ros_interfaces.msg import SegmentationResult, SegmentedObject


def test_our_messages_serialised_by_rclpy_read_back_through_the_bags_typestore():
    """Rclpy's CDR (what the node publishes) against rosbags' reader of our .msg files."""
    sent = SegmentationResult(objects=[SegmentedObject(object_id=7, label="cup", score=0.25, has_3d=True)],
                              width=640, height=480)
    sent.header.stamp.sec, sent.header.frame_id = 12, "camera_optical"
    read = typestore().deserialize_cdr(serialize_message(sent), "sam2_ros_interfaces/msg/SegmentationResult")
    assert (read.width, read.height, read.header.stamp.sec, read.header.frame_id) == (640, 480, 12, "camera_optical")
    (obj,) = read.objects
    assert (obj.object_id, obj.label, obj.score, obj.has_3d) == (7, "cup", 0.25, True)


def test_a_new_bag_never_replaces_what_is_there_and_an_unknown_storage_is_named(tmp_path):
    (tmp_path / "taken").mkdir()
    with pytest.raises(BagError, match="'.*taken' already exists: give a new path or delete it"):
        writer(tmp_path / "taken")
    with pytest.raises(BagError, match="unknown storage 'zip': use mcap or sqlite3"):
        writer(tmp_path / "new", storage="zip")
    assert not (tmp_path / "new").exists()


def test_a_type_name_resolves_to_its_rclpy_class_or_is_refused_by_name():
    assert message_class("sensor_msgs/msg/Image") is Image
    assert message_class("sam2_ros_interfaces/msg/SegmentedObject") is SegmentedObject
    with pytest.raises(BagError, match="'camera_driver_msgs/msg/Frame' is not available in this ROS installation"):
        message_class("camera_driver_msgs/msg/Frame")
    with pytest.raises(BagError, match="'sensor_msgs/msg/NoSuchThing' is not available"):
        message_class("sensor_msgs/msg/NoSuchThing")
