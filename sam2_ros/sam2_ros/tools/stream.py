"""A camera and sam2_segmenter_node in separate processes, as robots run them: 3D per result at camera rates.

This process is the camera: 640x480 rgb8 colour at 15 or 30 Hz, 16UC1 depth at 30 Hz sharing
the colour stamps (at 15 Hz every other depth frame has no colour twin), a camera_info per
colour frame, all with one QoS kind; depth may be published late (a lagging depth camera). The
node is the installed `sam2_segmenter_node`, started with depth on. A result "with 3D" is one
paired with the depth frame of its own stamp. In the text run a text prompt comes a third of the way
in, and the detector's passes (Grounding DINO tiny's architecture, random weights, at a short side of
TEXT_SIZE, one after the other) are spread over the frames from then on: the results' interval
before it beside the interval once its first pass ended. In the segment-everything runs
~/segment_everything (EVERYTHING_POINTS a side) is called as far in: the interval before the call
beside the interval until its answer. In the hung-viewer run a process subscribed reliably to every
output (as RViz is) stops reading as far in (SIGSTOP) and stays stopped: the interval before it
beside the interval after.
"""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import rclpy
import skimage.data
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from sam2_ros.ros.conversions import array_to_image
from sam2_ros.ros.prompt_msgs import stamp_ns
from sam2_ros.tools.glue import listener
from sam2_ros_interfaces.msg import Prompt, SegmentationResult
from sam2_ros_interfaces.srv import SegmentEverything

DEPTH_HZ = 30.0
WIDTH, HEIGHT = 640, 480
BOX = (200, 120, 440, 360)  # the object: 1 m in front of a wall at 2 m
TEXT_SIZE = 320  # the detector's input in the text run: a pass spans seconds of frames, not a minute
TEXT_AT = 1 / 3  # the text prompt comes this far into the text run
TEXT_SECONDS = 60.0  # the text run's least length: on a 2-core CPU one pass spans some 15 s of frames
EVERYTHING_POINTS = 16  # points a side of the segment-everything runs' call (sam2_bench's core suite's default)


@dataclass(frozen=True)
class StreamRun:
    """One run's settings."""

    colour_hz: float
    qos: str  # "reliable" or "sensor_data"
    lag_s: float = 0.0  # depth published this long after the colour frame of its stamp
    seconds: float = 20.0
    large_shm: bool = False  # both processes with config/fastdds_large_images.xml
    text: bool = False  # a text prompt TEXT_AT into the run, its detector's passes back to back from then on
    everything: bool = False  # ~/segment_everything called TEXT_AT into the run
    hung_viewer: bool = False  # a viewer on every output (reliable, as RViz), stopped with SIGSTOP TEXT_AT into the run


def scene() -> tuple[np.ndarray, np.ndarray]:
    """Return the colour image (a real photograph) and its depth in millimetres."""
    rgb = cv2.resize(skimage.data.astronaut(), (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)
    depth = np.full((HEIGHT, WIDTH), 2000, np.uint16)
    x0, y0, x1, y1 = BOX
    depth[y0:y1, x0:x1] = 1000
    return rgb, depth


def camera_info(stamp: Header) -> CameraInfo:
    f, cx, cy = 525.0, (WIDTH - 1) / 2, (HEIGHT - 1) / 2
    return CameraInfo(header=stamp, width=WIDTH, height=HEIGHT, k=[f, 0.0, cx, 0.0, f, cy, 0.0, 0.0, 1.0],
                      p=[f, 0.0, cx, 0.0, 0.0, f, cy, 0.0, 0.0, 0.0, 1.0, 0.0])


def header_at(ns: int) -> Header:
    msg = Header(frame_id="camera_color_optical_frame")
    msg.stamp.sec, msg.stamp.nanosec = divmod(ns, 10**9)
    return msg


def fastdds_profile() -> Path:
    from ament_index_python.packages import get_package_share_directory
    return Path(get_package_share_directory("sam2_ros")) / "config" / "fastdds_large_images.xml"


def profiles_variable(distro: str | None = None) -> str:
    """Name the one variable this ROS's Fast DDS reads XML profiles from (both set: Fast DDS 3 loads it twice)."""
    distro = os.environ.get("ROS_DISTRO", "") if distro is None else distro
    return "FASTRTPS_DEFAULT_PROFILES_FILE" if distro in ("humble", "jazzy") else "FASTDDS_DEFAULT_PROFILES_FILE"


def start_node(checkpoint: str, image_size: int, device: str, qos: str, *params: str) -> subprocess.Popen:
    """Start the installed node as `ros2 run` does; `params` are more `name:=value` settings."""
    from ament_index_python.packages import get_package_prefix
    executable = Path(get_package_prefix("sam2_ros")) / "lib" / "sam2_ros" / "sam2_segmenter_node"  # as ros2 run
    settings = (f"checkpoint:={checkpoint}", f"image_size:={image_size}", f"device:={device}", "depth:=true",
                f"image_qos:={qos}", *params)
    args = [str(executable), "--ros-args", *(arg for setting in settings for arg in ("-p", setting)),
            "-r", "image:=/camera/color/image_raw", "-r", "camera_info:=/camera/color/camera_info",
            "-r", "depth:=/camera/aligned_depth_to_color/image_raw", "-r", "prompt:=/sam2/prompt"]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"})


class Camera:
    """The camera's publishers and a listener of the node's results, in this process."""

    def __init__(self, qos: str):
        self.node = rclpy.create_node("sam2_stream_camera")
        reliability = ReliabilityPolicy.RELIABLE if qos == "reliable" else ReliabilityPolicy.BEST_EFFORT
        profile = QoSProfile(depth=10, reliability=reliability)
        self.colour = self.node.create_publisher(Image, "/camera/color/image_raw", profile)
        self.info = self.node.create_publisher(CameraInfo, "/camera/color/camera_info", profile)
        self.depth = self.node.create_publisher(Image, "/camera/aligned_depth_to_color/image_raw", profile)
        self.prompt = self.node.create_publisher(Prompt, "/sam2/prompt", 10)
        self.results: list[tuple[float, SegmentationResult]] = []
        reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.node.create_subscription(SegmentationResult, "/sam2_segmenter_node/result",
                                      lambda msg: self.results.append((time.time(), msg)), reliable)
        self.diagnostics: dict[str, str] = {}  # the node's last /diagnostics values
        self.first_text_pass_at: float | None = None  # time.time() of the diagnostics first counting a text pass
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._diagnostics_cb, 10)
        self._executor = SingleThreadedExecutor()
        self._executor.add_node(self.node)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _diagnostics_cb(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if "sam2_segmenter_node" in status.name:
                self.diagnostics = {kv.key: kv.value for kv in status.values}
                if self.first_text_pass_at is None and int(self.diagnostics.get("text passes", 0)):
                    self.first_text_pass_at = time.time()

    def _spin(self) -> None:
        while not self._stop.is_set():
            self._executor.spin_once(timeout_sec=0.05)

    def wait_for_node(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not (self.colour.get_subscription_count() and self.depth.get_subscription_count()
                   and self.prompt.get_subscription_count()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the node did not subscribe within {timeout:.0f} s")
            time.sleep(0.1)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._executor.shutdown()
        self.node.destroy_node()


def schedule(run: StreamRun, start_ns: int) -> list[tuple[float, str, int]]:
    """(seconds after start, 'colour' or 'depth', stamp ns) in publishing order."""
    every = round(DEPTH_HZ / run.colour_hz)
    events = []
    for k in range(int(run.seconds * DEPTH_HZ)):
        at, stamp = k / DEPTH_HZ, start_ns + round(k * 1e9 / DEPTH_HZ)
        events.append((at + run.lag_s, "depth", stamp))
        if k % every == 0:
            events.append((at, "colour", stamp))
    return sorted(events)


def stream(checkpoint: str, run: StreamRun, image_size: int = 256, device: str = "cpu") -> dict:
    """Stream one run into a fresh node process; return what came back (rclpy is initialised here)."""
    with tempfile.TemporaryDirectory() as scratch:
        params = text_params(Path(scratch)) if run.text else ()
        return _stream(checkpoint, run, image_size, device, params)


def text_params(scratch: Path) -> tuple[str, ...]:
    """Return the node's settings for the text run: Grounding DINO tiny's architecture saved in `scratch`."""
    from sam2_ros.tools.text_bench import save_grounding_dino_tiny
    detector = save_grounding_dino_tiny(scratch / "grounding_dino_tiny")
    # no box passes the threshold: the period measured is the passes', not that of the objects they would add
    return (f"text_detector:={detector}", f"text_image_size:={TEXT_SIZE}", "text_period_s:=0.1",
            "text_box_threshold:=1.0")


def _stream(checkpoint: str, run: StreamRun, image_size: int, device: str, params: tuple[str, ...]) -> dict:
    from sam2_ros.tools.text_bench import PHRASES
    rgb, depth = scene()
    rclpy.init()
    process = start_node(checkpoint, image_size, device, run.qos, *params)
    camera = Camera(run.qos)
    text_sent_at = everything = everything_sent_at = viewer_stopped_at = None
    viewer = listener("/sam2_segmenter_node") if run.hung_viewer else None
    everything_answered: list[float] = []
    client = camera.node.create_client(SegmentEverything, "/sam2_segmenter_node/segment_everything")
    try:
        camera.wait_for_node(120.0)
        if run.everything and not client.wait_for_service(timeout_sec=60.0):
            raise RuntimeError("the node offers no ~/segment_everything")
        start_ns, started = time.time_ns() + 200_000_000, time.monotonic() + 0.2
        depth_sent, colour_sent, prompted = set(), set(), False
        for at, kind, stamp in schedule(run, start_ns):
            time.sleep(max(0.0, started + at - time.monotonic()))
            header = header_at(stamp)
            if kind == "depth":
                camera.depth.publish(array_to_image(depth, "16UC1", header))
                depth_sent.add(stamp)
                continue
            camera.info.publish(camera_info(header))
            camera.colour.publish(array_to_image(rgb, "rgb8", header))
            colour_sent.add(stamp)
            if camera.results and not prompted:  # one object, once the node answers frames
                camera.prompt.publish(Prompt(header=Header(), object_id=1, box=[float(v) for v in BOX]))
                prompted = True
            if run.text and text_sent_at is None and at >= TEXT_AT * run.seconds:
                camera.prompt.publish(Prompt(header=Header(), object_id=Prompt.ASSIGN_NEW_ID, text=" . ".join(PHRASES)))
                text_sent_at = time.time()
            if run.everything and everything is None and at >= TEXT_AT * run.seconds:
                everything = client.call_async(SegmentEverything.Request(points_per_side=EVERYTHING_POINTS))
                everything_sent_at = time.time()
                everything.add_done_callback(lambda _: everything_answered.append(time.time()))
            if viewer and viewer_stopped_at is None and at >= TEXT_AT * run.seconds:
                viewer.send_signal(signal.SIGSTOP)  # hung: its sockets and queues fill, it acknowledges nothing
                viewer_stopped_at = time.time()
        time.sleep(3.0 + run.lag_s)  # the last frames' outputs
    finally:
        camera.close()
        rclpy.shutdown()
        if viewer:
            viewer.kill()  # SIGKILL ends a stopped process too: it printed nothing after it was stopped
            viewer_messages = len(viewer.communicate()[0].splitlines())
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
    figures = measure(camera.results, colour_sent, depth_sent, run)
    figures.update({key.replace("no depth: ", "no_depth_").replace(" ", "_"): int(value)
                    for key, value in camera.diagnostics.items() if key.startswith("no depth")})
    received = [at for at, _ in camera.results]
    if run.everything:
        answered = everything_answered[0] if everything_answered else float("inf")
        figures.update(interval_figures(received, everything_sent_at, everything_sent_at, answered, "everything"))
        figures["everything_s"] = answered - everything_sent_at if everything_sent_at else float("nan")
        figures["everything_success"] = bool(everything_answered) and everything.result().success
    if run.hung_viewer:
        figures.update(interval_figures(received, viewer_stopped_at, viewer_stopped_at, float("inf"), "hung_viewer"))
        figures["viewer_messages_before_hung"] = viewer_messages
    if run.text:
        figures.update(interval_figures(received, text_sent_at, camera.first_text_pass_at, float("inf"), "text"))
        figures["passes"] = int(camera.diagnostics.get("text passes", 0))  # stream_30hz_text_passes
        figures["detector_ms_p50"] = float(camera.diagnostics.get("text detector ms p50", "nan"))
    return figures


def interval_figures(received: list[float], sent_at: float | None, from_at: float | None, to_at: float,
                     what: str) -> dict:
    """Return the results' interval before `sent_at`, and within [from_at, to_at) (p50, worst).

    The text run's window starts when its first pass ended (the detector loads on a thread of its
    own before it: that time is in neither); segment everything's spans the call to its answer.
    """
    def intervals(start: float, end: float) -> list[float]:
        times = [t for t in received if start <= t < end]
        return [(later - earlier) * 1e3 for earlier, later in zip(times, times[1:])]
    before = intervals(received[0], sent_at) if received and sent_at else []
    during = intervals(from_at, to_at) if from_at else []
    nan = float("nan")
    return {f"result_interval_ms_p50_before_{what}": float(np.median(before)) if before else nan,
            f"result_interval_ms_p50_while_{what}": float(np.median(during)) if during else nan,
            f"result_interval_ms_max_while_{what}": max(during) if during else nan}


def measure(results: list[tuple[float, SegmentationResult]], colour_sent: set[int], depth_sent: set[int],
            run: StreamRun) -> dict:
    frames = [(received, r) for received, r in results if stamp_ns(r.header) in colour_sent]
    had_depth = [(received, r) for received, r in frames if stamp_ns(r.header) in depth_sent]
    paired = [r for _, r in had_depth if stamp_ns(r.depth_header) == stamp_ns(r.header)]
    ages = [(received - stamp_ns(r.header) / 1e9) * 1e3 for received, r in frames]
    objects = [o for _, r in frames for o in r.objects if o.visible]
    return {"colour_frames_sent": len(colour_sent), "results": len(frames),
            "results_with_depth_published": len(had_depth),
            "3d_fraction": len(paired) / len(had_depth) if had_depth else float("nan"),
            "visible_objects_with_3d_fraction": (sum(o.has_3d for o in objects) / len(objects)
                                                 if objects else float("nan")),
            "result_age_ms_p50": float(np.median(ages)) if ages else float("nan"),
            "postprocess_ms_p50": float(np.median([r.postprocess_ms for _, r in frames])) if frames else float("nan")}


RUNS = {"15hz_reliable": StreamRun(15.0, "reliable"), "30hz_reliable": StreamRun(30.0, "reliable"),
        "15hz_best_effort": StreamRun(15.0, "sensor_data", large_shm=True),
        "30hz_best_effort": StreamRun(30.0, "sensor_data", large_shm=True),
        "lag600": StreamRun(30.0, "reliable", lag_s=0.6),
        "30hz_best_effort_default_transport": StreamRun(30.0, "sensor_data"),
        "30hz_text": StreamRun(30.0, "reliable", text=True), "5hz_text": StreamRun(5.0, "reliable", text=True),
        "30hz_everything": StreamRun(30.0, "reliable", everything=True),
        "5hz_everything": StreamRun(5.0, "reliable", everything=True),
        "30hz_hung_viewer": StreamRun(30.0, "reliable", hung_viewer=True)}


def bench_stream(checkpoint: str, image_size: int, device: str, seconds: float) -> dict:
    """Every run; `node_3d_fraction` is the worst of the runs without lag, as documented to run them.

    Best-effort runs use config/fastdds_large_images.xml (what README tells users on one machine);
    the last run shows what Fast DDS's default transport loses.
    """
    out = {}
    for name, run in RUNS.items():  # a process per run: Fast DDS reads its profile once per process
        env = {**os.environ, "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
        if run.large_shm:
            env[profiles_variable()] = str(fastdds_profile())
        done = subprocess.run([sys.executable, "-m", "sam2_ros.tools.stream", checkpoint, name, str(image_size),
                               device, str(seconds)], capture_output=True, text=True, env=env, check=True)
        figures = json.loads(done.stdout.splitlines()[-1])
        out.update({f"stream_{name}_{key}": value for key, value in figures.items()})
    out["node_3d_fraction"] = min(out[f"stream_{name}_3d_fraction"] for name, run in RUNS.items()
                                  if name not in ("lag600", "30hz_best_effort_default_transport")
                                  and not (run.text or run.everything or run.hung_viewer))
    out["node_3d_fraction_lag600"] = out["stream_lag600_3d_fraction"]
    return out


def main(argv: list[str]) -> int:
    """One run in this process: CHECKPOINT RUN IMAGE_SIZE DEVICE SECONDS -> one JSON line."""
    checkpoint, name, image_size, device, seconds = argv
    run = RUNS[name]
    length = max(float(seconds), TEXT_SECONDS) if run.text else float(seconds)
    figures = stream(checkpoint, dataclasses.replace(run, seconds=length), int(image_size), device)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
