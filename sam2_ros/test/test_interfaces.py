"""Every sam2_ros_interfaces message and service crosses the real middleware intact."""
import threading
import time

import pytest
import rclpy
from geometry_msgs.msg import Point32
from rclpy.executors import SingleThreadedExecutor
from sensor_msgs.msg import Image, RegionOfInterest
from std_msgs.msg import Header

from sam2_ros.ros.main import spin
from sam2_ros_interfaces.msg import Prompt, SegmentationResult, SegmentedObject
from sam2_ros_interfaces.srv import AddObjects, RemoveObject, Segment


@pytest.fixture
def node():
    rclpy.init()
    node = rclpy.create_node("interfaces_test")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    stopping = threading.Event()
    spinner = threading.Thread(target=spin, args=(executor, stopping.is_set), daemon=True)
    spinner.start()
    yield node
    stopping.set()  # out of the wait set before the executor shuts down (rclpy's shutdown() races a spinner)
    spinner.join(timeout=10)
    executor.shutdown()
    node.destroy_node()
    rclpy.shutdown()


def header() -> Header:
    header = Header(frame_id="camera_color_optical_frame")
    header.stamp.sec, header.stamp.nanosec = 1700000000, 123456789
    return header


def sample_prompt() -> Prompt:
    mask = Image(header=header(), height=2, width=3, encoding="mono8", step=3, data=bytes([0, 255] * 3))
    return Prompt(header=header(), object_id=Prompt.ASSIGN_NEW_ID, label="cup",
                  points=[Point32(x=10.5, y=20.25), Point32(x=3.0, y=4.0)],
                  point_labels=[Prompt.FOREGROUND, Prompt.BACKGROUND],
                  box=[1.0, 2.0, 30.5, 40.5], mask=mask)


def sample_result() -> SegmentationResult:
    obj = SegmentedObject(object_id=7, label="cup", score=0.9375, presence=0.984375, visible=True,
                          box=RegionOfInterest(x_offset=1, y_offset=1, width=5, height=4),
                          area=17, centroid=Point32(x=3.0, y=2.5),
                          contour_points=[1.0, 1.0, 9.0, 1.0, 9.0, 8.0, 3.0, 3.0, 5.0, 3.0, 5.0, 4.0],
                          contour_lengths=[3, 3], contour_parents=[-1, 0],
                          mask=Image(height=4, width=5, encoding="mono8", step=5, data=bytes(range(20))))
    return SegmentationResult(header=header(), height=480, width=640, objects=[obj], encode_ms=12.5,
                              decode_ms=3.25, postprocess_ms=1.0, latency_ms=20.0)


def receive(node, message):
    """Publish `message` on a fresh topic and return what a subscription gets."""
    received = []
    topic = f"roundtrip_{type(message).__name__.lower()}"
    node.create_subscription(type(message), topic, received.append, 10)
    publisher = node.create_publisher(type(message), topic, 10)
    deadline = time.monotonic() + 10
    while publisher.get_subscription_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    publisher.publish(message)
    while not received and time.monotonic() < deadline:
        time.sleep(0.01)
    assert received, f"no {type(message).__name__} arrived within 10 s"
    return received[0]


@pytest.mark.parametrize("make", [sample_prompt, sample_result,
                                  lambda: sample_result().objects[0]])
def test_messages_round_trip_over_the_middleware(node, make):
    sent = make()
    assert receive(node, sent) == sent


def call(node, srv_type, handler, request):
    name = f"roundtrip_{srv_type.__name__.lower()}"
    node.create_service(srv_type, name, handler)
    client = node.create_client(srv_type, name)
    assert client.wait_for_service(timeout_sec=10), f"{name} never appeared"
    future = client.call_async(request)
    deadline = time.monotonic() + 10
    while not future.done() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert future.done(), f"{name} did not answer within 10 s"
    return future.result()


def test_segment_service_round_trips(node):
    seen = []

    def handler(request, response):
        seen.append(request)
        response.success, response.message, response.result = True, "segmented 1 object", sample_result()
        return response

    request = Segment.Request(prompts=[sample_prompt()], image=sample_prompt().mask)
    response = call(node, Segment, handler, request)
    assert seen[0] == request
    assert (response.success, response.message, response.result) == (True, "segmented 1 object",
                                                                     sample_result())


def test_add_objects_service_round_trips(node):
    def handler(request, response):
        response.success, response.message = True, f"added {len(request.prompts)}"
        response.object_ids, response.result = [3], sample_result()
        return response

    response = call(node, AddObjects, handler, AddObjects.Request(prompts=[sample_prompt()]))
    assert (response.success, response.message, list(response.object_ids)) == (True, "added 1", [3])
    assert response.result == sample_result()


def test_remove_object_service_round_trips(node):
    def handler(request, response):
        response.success, response.message = False, f"no object with id {request.object_id}"
        return response

    response = call(node, RemoveObject, handler, RemoveObject.Request(object_id=42))
    assert (response.success, response.message) == (False, "no object with id 42")
