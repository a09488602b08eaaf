"""3D over real topics: depth paired by stamp, 3D fields and cloud equal to the core's on the published masks."""
import random
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_srvs.srv import Trigger
from visualization_msgs.msg import Marker, MarkerArray

from rosharness import NODE, Running, add, box_prompt, full_mask, header, wait_until
from sam2_ros.core.geometry import Intrinsics, depth_in_metres, mask_on_depth, object_3d, register
from sam2_ros.ros.conversions import array_to_image
from sam2_ros.tools.scenes import object_box, pan_clip
from sam2_ros_interfaces.srv import RemoveObject

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
COLOUR = Intrinsics(fx=300.0, fy=300.0, cx=159.5, cy=119.5, width=320, height=240)


def camera_info(camera: Intrinsics, stamp) -> CameraInfo:
    k = [camera.fx, 0.0, camera.cx, 0.0, camera.fy, camera.cy, 0.0, 0.0, 1.0]
    return CameraInfo(header=stamp, width=camera.width, height=camera.height, k=k,
                      p=[camera.fx, 0.0, camera.cx, 0.0, 0.0, camera.fy, camera.cy, 0.0, 0.0, 0.0, 1.0, 0.0])


def depth_image(truth: np.ndarray, object_mm: int, stamp, scale: int = 1, wall_mm: int = 2000,
                encoding: str = "16UC1") -> Image:
    """A wall at wall_mm and the object at object_mm, at 1/scale of the colour size.

    16UC1 in millimetres (RealSense, OAK); 32FC1 in metres with +inf holes where the camera saw
    nothing (ZED, Isaac Sim): every 5th row.
    """
    depth = np.full(truth.shape, wall_mm, np.uint16)
    depth[truth] = object_mm
    depth = np.ascontiguousarray(depth[::scale, ::scale])
    if encoding == "32FC1":
        depth = depth.astype(np.float32) / 1000
        depth[::5] = np.inf
    return array_to_image(depth, encoding, stamp)


class Depth:
    """The node with depth on, and a peer that publishes depth and camera infos and listens to the 3D outputs."""

    def __init__(self, checkpoint, **overrides):
        self.running = Running(checkpoint, depth=True, cloud_voxel_size=0.0, **overrides)
        peer = self.running.peer.node
        self.depth = peer.create_publisher(Image, "depth", RELIABLE)
        self.info = peer.create_publisher(CameraInfo, "camera_info", RELIABLE)
        self.depth_info = peer.create_publisher(CameraInfo, "depth/camera_info", RELIABLE)
        for publisher in (self.depth, self.info, self.depth_info):
            wait_until(lambda: publisher.get_subscription_count() > 0, 30, f"a subscriber on {publisher.topic}")
        self.clouds, self.markers, self.diagnostics = [], [], []
        self.images, self.truths = pan_clip(3)

    def listen(self, kind: str) -> None:
        topic, msg_type, store = {"cloud": ("points", PointCloud2, self.clouds),
                                  "markers": ("markers", MarkerArray, self.markers)}[kind]
        self.running.peer.node.create_subscription(msg_type, f"{NODE}/{topic}", store.append, RELIABLE)
        wait_until(lambda: self.running.node.outputs.subscribers(topic), 30, f"the {topic} subscription")

    def frame(self, t: int, stamp, depths=((0, 1000, 2000),), scale: int = 1, encoding: str = "16UC1",
              lag_s: float = 0.0):
        """Publish depth frames (stamp offset ms, object mm, wall mm) and the colour frame; return its result.

        Depth goes first, or `lag_s` after the colour frame (a depth camera lagging colour).
        """
        self.info.publish(camera_info(COLOUR, stamp))
        wanted = set()
        if lag_s:
            self.running.peer.publish_rgb(self.images[t], stamp)
            time.sleep(lag_s)
        for offset_ms, mm, wall_mm in depths:
            ns = stamp.stamp.sec * 10**9 + stamp.stamp.nanosec + offset_ms * 10**6
            self.depth.publish(depth_image(self.truths[t], mm, header(ns // 10**9, ns % 10**9), scale, wall_mm,
                                           encoding))
            wanted.add(ns)
        if not lag_s:
            wait_until(lambda: wanted <= self.running.node.depth.stamps(), 30, "the depth frames")
            self.running.peer.publish_rgb(self.images[t], stamp)
        return self.running.peer.result_for(stamp)

    def close(self):
        self.running.close()


@pytest.fixture
def depth(checkpoint):
    harness = Depth(checkpoint)
    yield harness
    harness.close()


def expected_3d(mask: np.ndarray, object_mm: int, truth: np.ndarray, depth_camera=COLOUR, scale: int = 1):
    """The core's 3D of a published mask (the node must agree with it)."""
    metres = depth_in_metres(np.where(truth, object_mm, 2000).astype(np.uint16)[::scale, ::scale], "16UC1")
    return object_3d(mask_on_depth(mask, register(COLOUR, depth_camera)), metres, depth_camera)


def test_3d_fields_and_the_cloud_equal_the_core_on_the_published_mask(depth):
    depth.listen("cloud")
    depth.frame(0, header(10))
    assert add(depth.running, box_prompt(object_box(depth.truths[0]), header(10), label="cat")).success
    stamp = header(11)
    result = depth.frame(1, stamp)
    (obj,) = result.objects
    assert obj.visible and obj.has_3d
    assert result.depth_header == stamp and result.header == stamp
    core = expected_3d(full_mask(obj, (240, 320)), 1000, depth.truths[1])
    centroid = [obj.centroid_3d.x, obj.centroid_3d.y, obj.centroid_3d.z]
    np.testing.assert_allclose(centroid, core.centroid, atol=1e-6)
    np.testing.assert_allclose([obj.min_3d.x, obj.min_3d.y, obj.min_3d.z], core.minimum, atol=1e-6)
    np.testing.assert_allclose([obj.max_3d.x, obj.max_3d.y, obj.max_3d.z], core.maximum, atol=1e-6)
    assert obj.depth_pixels == core.count

    cloud = wait_until(lambda: next((c for c in depth.clouds if c.header == stamp), None), 30, "the cloud")
    assert [f.name for f in cloud.fields] == ["x", "y", "z", "object_id", "rgb"] and cloud.point_step == 20
    points = np.frombuffer(bytes(cloud.data), np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"),
                                                        ("object_id", "<u4"), ("rgb", "<u4")]))
    assert cloud.width == core.count and set(points["object_id"]) == {1}
    np.testing.assert_allclose(np.stack([points["x"], points["y"], points["z"]], 1), core.points, atol=1e-6)
    # same camera: a point's colour is that of the pixel it projects to
    cols = np.rint(points["x"] / points["z"] * COLOUR.fx + COLOUR.cx).astype(int)
    rows = np.rint(points["y"] / points["z"] * COLOUR.fy + COLOUR.cy).astype(int)
    r, g, b = (depth.images[1][rows, cols, k].astype(np.uint32) for k in range(3))
    np.testing.assert_array_equal(points["rgb"], (r << 16) | (g << 8) | b)


def test_the_depth_frame_closest_in_stamp_is_used_and_an_old_one_never(depth):
    depth.frame(0, header(20))
    assert add(depth.running, box_prompt(object_box(depth.truths[0]), header(20))).success
    # everything at 1.2 m 40 ms before, at 0.8 m 10 ms after: the later one is closer
    (obj,) = depth.frame(1, header(21), depths=((-40, 1200, 1200), (10, 800, 800))).objects
    assert obj.has_3d and obj.centroid_3d.z == pytest.approx(0.8, abs=1e-6)
    # frames with 3D count camera frames, not the prompt's result (counted just after the result goes out)
    counts = wait_until(lambda: (c := depth.running.node.counts()).processed == 2 and c, 10, "two frames counted")
    assert counts.with_3d == 2

    (obj,) = depth.frame(2, header(22), depths=((-80, 1000, 2000),)).objects  # older than depth_max_age_ms 50
    result = depth.running.peer.result_for(header(22))
    assert obj.visible and not obj.has_3d and obj.depth_pixels == 0 and result.depth_header.frame_id == ""
    assert depth.running.node.counts().no_depth["none within depth_max_age_ms"] >= 1
    seen = []
    depth.running.peer.node.create_subscription(DiagnosticArray, "/diagnostics", seen.append, 10)
    values = wait_until(lambda: seen and {kv.key: kv.value for kv in seen[-1].status[0].values}, 30, "diagnostics")
    assert int(values["no depth: none within depth_max_age_ms"]) >= 1 and int(values["frames with 3D"]) >= 2


def test_markers_box_each_object_and_leave_no_ghost_after_remove_or_reset(depth):
    depth.listen("markers")
    depth.frame(0, header(30))
    assert add(depth.running, box_prompt(object_box(depth.truths[0]), header(30), label="cat")).success
    assert add(depth.running, box_prompt([250, 10, 300, 60], header(30), object_id=2)).success

    def markers_for(stamp):
        return wait_until(lambda: next((m.markers for m in depth.markers if m.markers[0].header == stamp), None),
                          30, "markers")
    result = depth.frame(1, header(31))
    markers = markers_for(header(31))
    assert markers[0].action == Marker.DELETEALL
    cubes = {m.id: m for m in markers if m.type == Marker.CUBE}
    with_3d = {o.object_id: o for o in result.objects if o.has_3d}
    assert set(cubes) == set(with_3d) and 1 in cubes
    one = with_3d[1]
    assert cubes[1].pose.position.z == pytest.approx((one.min_3d.z + one.max_3d.z) / 2)
    assert cubes[1].scale.x == pytest.approx(max(one.max_3d.x - one.min_3d.x, 0.005))
    assert any(m.type == Marker.TEXT_VIEW_FACING and m.text == "1: cat" for m in markers)

    answer = depth.running.peer.call(RemoveObject, f"{NODE}/remove_object", RemoveObject.Request(object_id=1))
    assert answer.success
    depth.frame(2, header(32))
    assert all(m.id != 1 for m in markers_for(header(32))[1:])
    assert depth.running.peer.call(Trigger, f"{NODE}/reset", Trigger.Request()).success
    depth.frame(2, header(33))
    assert [m.action for m in markers_for(header(33))] == [Marker.DELETEALL]


def test_the_cloud_is_not_built_without_a_subscriber(depth, monkeypatch):
    import sam2_ros.ros.outputs as node_module
    built = []

    def counted(*args, **kwargs):
        built.append(args[0].header.stamp.sec)
        return real(*args, **kwargs)
    real = node_module.cloud_message
    monkeypatch.setattr(node_module, "cloud_message", counted)
    depth.frame(0, header(40))
    assert add(depth.running, box_prompt(object_box(depth.truths[0]), header(40))).success
    depth.frame(1, header(41))
    depth.frame(2, header(42))  # 42's result comes after 41 was published whole
    assert built == [], "nobody listened to ~/points during frame 41"
    depth.listen("cloud")  # (frame 42's cloud step may already see this subscriber)
    depth.frame(2, header(43))
    wait_until(lambda: any(c.header == header(43) for c in depth.clouds), 30, "a cloud")
    assert built[-1] == 43 and 41 not in built


def test_depth_of_half_the_size_needs_its_own_camera_info_and_is_then_registered(checkpoint):
    harness = Depth(checkpoint)
    try:
        half = Intrinsics(fx=150.0, fy=150.0, cx=79.5, cy=59.5, width=160, height=120)
        harness.frame(0, header(50), scale=2)
        assert add(harness.running, box_prompt(object_box(harness.truths[0]), header(50))).success
        (obj,) = harness.frame(1, header(51), scale=2).objects
        assert obj.visible and not obj.has_3d
        assert harness.running.node.counts().no_depth[
            "depth of another size than the image and no depth/camera_info of its size"] >= 1
        harness.depth_info.publish(camera_info(half, header(52)))
        wait_until(lambda: harness.running.node.depth.has_infos()[1], 30, "the depth camera_info")
        (obj,) = harness.frame(1, header(52), scale=2).objects
        core = expected_3d(full_mask(obj, (240, 320)), 1000, harness.truths[1], half, scale=2)
        assert obj.has_3d and obj.depth_pixels == core.count
        np.testing.assert_allclose([obj.centroid_3d.x, obj.centroid_3d.y, obj.centroid_3d.z], core.centroid,
                                   atol=1e-6)
    finally:
        harness.close()


def test_32fc1_metres_with_infinite_holes_give_the_cores_3d(depth):
    """ZED and Isaac Sim publish 32FC1 metres, +inf where nothing was seen."""
    depth.frame(0, header(60), encoding="32FC1")
    assert add(depth.running, box_prompt(object_box(depth.truths[0]), header(60))).success
    (obj,) = depth.frame(1, header(61), encoding="32FC1").objects
    metres = np.where(depth.truths[1], 1.0, 2.0).astype(np.float32)
    metres[::5] = np.nan  # the holes: no reading
    core = object_3d(mask_on_depth(full_mask(obj, (240, 320)), register(COLOUR, COLOUR)), metres, COLOUR)
    assert obj.has_3d and obj.depth_pixels == core.count
    np.testing.assert_allclose([obj.centroid_3d.x, obj.centroid_3d.y, obj.centroid_3d.z], core.centroid, atol=1e-6)


def test_depth_arriving_after_its_colour_frame_still_gives_that_frame_3d(checkpoint):
    """A depth camera lagging colour: the frame's outputs wait (depth_wait_ms) for the depth of its stamp.

    The lag (2.5 s) is longer than SAM 2 takes on the frame, so without the wait it would have no 3D.
    """
    harness = Depth(checkpoint, depth_wait_ms=6000.0)
    try:
        harness.frame(0, header(70))
        assert add(harness.running, box_prompt(object_box(harness.truths[0]), header(70))).success
        result = harness.frame(1, header(71), depths=((0, 800, 800),), lag_s=2.5)  # everything at 0.8 m
        (obj,) = result.objects
        assert result.depth_header == header(71) and obj.has_3d
        assert obj.centroid_3d.z == pytest.approx(0.8, abs=1e-6)
    finally:
        harness.close()


def test_a_frame_without_depth_empties_the_cloud_and_deletes_the_markers_no_ghosts(depth):
    depth.listen("cloud")
    depth.listen("markers")
    depth.frame(0, header(80))
    assert add(depth.running, box_prompt(object_box(depth.truths[0]), header(80))).success
    depth.frame(1, header(81))
    cloud = wait_until(lambda: next((c for c in depth.clouds if c.header == header(81)), None), 30, "a cloud")
    assert cloud.width > 0
    (obj,) = depth.frame(2, header(82), depths=((-80, 1000, 2000),)).objects  # too old to pair
    assert obj.visible and not obj.has_3d
    cloud = wait_until(lambda: next((c for c in depth.clouds if c.header == header(82)), None), 30,
                       "an empty cloud with the colour frame's header")
    assert cloud.width == 0 and len(cloud.data) == 0
    markers = wait_until(lambda: next((m.markers for m in depth.markers if m.markers[0].header == header(82)),
                                      None), 30, "markers of the frame without depth")
    assert [m.action for m in markers] == [Marker.DELETEALL]


def test_a_camera_info_without_a_camera_model_is_its_own_diagnostics_reason(depth):
    depth.frame(0, header(90))
    assert add(depth.running, box_prompt(object_box(depth.truths[0]), header(90))).success
    depth.info.publish(CameraInfo(header=header(91), width=320, height=240))  # K and P never set
    wait_until(lambda: not any(depth.running.node.inputs.camera_info().k), 30, "the zero camera_info")
    depth.depth.publish(depth_image(depth.truths[1], 1000, header(91)))
    wait_until(lambda: 91 * 10**9 in depth.running.node.depth.stamps(), 30, "the depth frame")
    depth.running.peer.publish_rgb(depth.images[1], header(91))
    (obj,) = depth.running.peer.result_for(header(91)).objects
    assert not obj.has_3d and depth.running.node.counts().no_depth["unusable camera_info"] == 1


def test_depth_max_age_ms_set_at_run_time_is_in_milliseconds(depth):
    from test_node_params import set_double
    depth.frame(0, header(100))
    assert add(depth.running, box_prompt(object_box(depth.truths[0]), header(100))).success
    set_double(depth.running, "depth_max_age_ms", 30.0)
    (near,) = depth.frame(1, header(101), depths=((20, 800, 800),)).objects  # 20 ms after the colour frame
    (far,) = depth.frame(2, header(102), depths=((40, 800, 800),)).objects  # 40 ms after
    assert near.has_3d and not far.has_3d


def test_depth_wait_ms_set_at_run_time_decides_whether_lagging_depth_is_waited_for(checkpoint):
    from test_node_params import set_double
    harness = Depth(checkpoint)
    try:
        harness.frame(0, header(110))
        assert add(harness.running, box_prompt(object_box(harness.truths[0]), header(110))).success
        set_double(harness.running, "depth_wait_ms", 0.0)
        (late,) = harness.frame(1, header(111), depths=((0, 800, 800),), lag_s=2.5).objects
        set_double(harness.running, "depth_wait_ms", 6000.0)
        (waited,) = harness.frame(2, header(112), depths=((0, 800, 800),), lag_s=2.5).objects
        assert not late.has_3d and waited.has_3d
    finally:
        harness.close()


def test_depth_window_s_set_at_run_time_keeps_that_many_seconds_of_depth_by_stamp(depth):
    from test_node_params import set_double

    def stream(first_s: int) -> set[int]:
        """Depth at 10 Hz for 3 s of stamps from first_s; return the stamps the node keeps."""
        for k in range(31):
            ns = first_s * 10**9 + k * 10**8
            depth.depth.publish(depth_image(depth.truths[1], 800, header(ns // 10**9, ns % 10**9)))
            wait_until(lambda: ns in depth.running.node.depth.stamps(), 30, "the depth frame")
        return depth.running.node.depth.stamps()

    depth.frame(0, header(120))
    assert add(depth.running, box_prompt(object_box(depth.truths[0]), header(120))).success
    set_double(depth.running, "depth_window_s", 1.0)
    assert stream(200) == {200 * 10**9 + k * 10**8 for k in range(20, 31)}  # 202.0 .. 203.0 s
    for stamp, kept in ((header(202), True), (header(201, 900_000_000), False)):
        depth.info.publish(camera_info(COLOUR, stamp))
        depth.running.peer.publish_rgb(depth.images[1], stamp)
        (obj,) = depth.running.peer.result_for(stamp).objects
        assert obj.has_3d == kept
    set_double(depth.running, "depth_window_s", 2.5)
    assert stream(300) == {300 * 10**9 + k * 10**8 for k in range(5, 31)}  # 300.5 .. 303.0 s


ODD = (0.0, -1.0, float("nan"), float("inf"), -float("inf"), 1e-30, 1e30)


def broken_depth_message(r: random.Random, rng: np.random.Generator, stamp, depth: Depth):
    """One seeded depth image or camera info a faulty driver could send: (publisher, message).

    Most are of the frame's size, so the node pairs them and works with their contents.
    """
    if r.random() < 0.6:
        encoding = r.choice(["16UC1", "32FC1", "32FC1", "16UC1", "mono16", "16SC1", "rgb8"])
        width, height = r.choice([(320, 240), (320, 240), (320, 240), (160, 120), (7, 3), (0, 0)])
        channel_bytes = {"16UC1": 2, "mono16": 2, "16SC1": 2, "32FC1": 4, "rgb8": 3}[encoding]
        step = width * channel_bytes + r.choice([0, 0, 0, 2])
        size = max(height * step - r.choice([0, 0, 0, 5]), 0)
        if encoding == "32FC1":  # metres, with every kind of hole and nonsense
            values = rng.choice(np.array([np.nan, np.inf, -np.inf, -1.0, 0.0, 0.3, 1.0, 2.0], np.float32),
                                size // 4 + 1)
            data = values.tobytes()[:size]
        else:
            data = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        return depth.depth, Image(header=stamp, width=width, height=height, encoding=encoding, step=step,
                                  data=data, is_bigendian=r.choice([0, 0, 0, 1]))
    k = [300.0, 0.0, 159.5, 0.0, 300.0, 119.5, 0.0, 0.0, 1.0]
    k[r.choice([0, 2, 4, 5])] = r.choice(ODD)  # fx, cx, fy or cy
    width, height = r.choice([(320, 240), (320, 240), (160, 120), (0, 0)])
    distortion = [r.uniform(-1, 1) for _ in range(r.choice([0, 5]))]
    info = CameraInfo(header=stamp, width=width, height=height, k=k, d=distortion)
    return r.choice([depth.info, depth.depth_info]), info


def test_broken_depth_images_and_camera_infos_never_stop_a_frame_nor_make_3d_non_finite(depth):
    """Seeded garbage on depth, camera_info and depth/camera_info between good pairs.

    Every frame still gets its result and nothing counts as a model failure; where an object has
    3D, its centroid is finite and inside its extent; and the good pairs give 3D.
    """
    r, rng = random.Random(7), np.random.default_rng(7)
    depth.frame(0, header(200))
    assert add(depth.running, box_prompt(object_box(depth.truths[0]), header(200))).success
    with_3d = 0
    for t in range(1, 31):
        stamp = header(200 + t)
        for _ in range(r.randint(1, 3)):
            publisher, message = broken_depth_message(r, rng, stamp, depth)
            publisher.publish(message)
        if t % 3 == 0:  # a good pair after the garbage: the depth camera's info set right again
            depth.depth_info.publish(camera_info(COLOUR, stamp))
            result = depth.frame(t % 3, stamp)
        else:
            depth.running.peer.publish_rgb(depth.images[t % 3], stamp)
            result = depth.running.peer.result_for(stamp)
        for obj in result.objects:
            if obj.has_3d:
                with_3d += 1
                low, mid, high = ([p.x, p.y, p.z] for p in (obj.min_3d, obj.centroid_3d, obj.max_3d))
                assert np.isfinite([low, mid, high]).all() and np.all(np.less_equal(low, mid))
                assert np.all(np.less_equal(mid, high))
    assert with_3d > 0 and depth.running.node.counts().failed == 0 and depth.running.node.worker_alive()
