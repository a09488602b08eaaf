"""Property-based abuse of the live node, in-process over the real middleware.

Random sequences of images (any encoding, size, row padding, repeated stamps, size changes),
prompts (points, boxes, masks of any size, encoding and length), detection arrays, service calls
(segment everything among them), parameter changes and lifecycle transitions. After
every step: the node is alive and in the state it reported; every result and label image
received describes a frame that was sent, with that frame's header and size; no model failure
came from garbage. After every sequence: every service call got its answer.

`SAM2_FUZZ_EXAMPLES=300` runs that many sequences with fresh random seeds (a search for
defects, outside the suite); the suite runs the same fixed ones every time.
"""
import os
import random
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import pytest
from geometry_msgs.msg import Point32
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from lifecycle_msgs.msg import State
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image
from std_srvs.srv import Trigger

from rosharness import NODE, Running, header, wait_until
from sam2_ros_interfaces.msg import Prompt as PromptMsg
from sam2_ros_interfaces.srv import AddObjects, RemoveObject, Segment, SegmentEverything

SEARCH = int(os.environ.get("SAM2_FUZZ_EXAMPLES", 0))
EXAMPLES, STEPS = SEARCH or 20, 100  # the suite: 2,000 steps
ENCODINGS = ("rgb8", "bgr8", "mono8", "mono16", "16UC1", "rgb16", "bgra8", "uyvy", "yuyv", "nv12", "nv21",
             "bayer_rggb8", "bayer_gbrg16", "32FC1")
CHANNEL_BYTES = {"rgb8": 3, "bgr8": 3, "mono8": 1, "mono16": 2, "16UC1": 2, "rgb16": 6, "bgra8": 4, "uyvy": 2,
                 "yuyv": 2, "nv12": 1, "nv21": 1, "bayer_rggb8": 1, "bayer_gbrg16": 2, "32FC1": 4}


@dataclass
class World:
    """What the fuzzer sent, and what it has checked so far."""

    sent: dict = field(default_factory=dict)  # frame_id -> (stamp, height, width)
    frames: int = 0
    checked_results: int = 0
    checked_masks: int = 0
    calls: list = field(default_factory=list)  # (service, future)
    clients: dict = field(default_factory=dict)  # one per service: a new client can miss its first answer


@pytest.fixture(scope="module")
def live(checkpoint):
    harness = Running(checkpoint, request_timeout_s=2.0, max_queued_requests=8, everything_points_per_side=2)
    yield harness, World()
    harness.close()


KINDS = ["image"] * 5 + ["prompt"] * 3 + ["service"] * 3 + ["parameter"] * 2 + ["detections", "lifecycle"]
PARAMETERS = [("score_threshold", 0.0), ("score_threshold", 0.9), ("contour_epsilon", 0.0), ("contour_epsilon", 3.0),
              ("min_area", 0.0), ("min_area", 50.0), ("mask_encoding", "mono8"), ("mask_encoding", "16UC1"),
              ("max_objects", 1), ("max_objects", 16), ("publish_overlay", False), ("mode", "image"),
              ("mode", "track"), ("requests_per_frame", 1), ("max_queued_requests", 2), ("max_queued_requests", 8),
              ("image_size", 512), ("mask_encoding", "rgb8")]


def prompt_fields(r: random.Random) -> dict:
    count = r.choice([0, 1, 2, 5, 65])
    points = [Point32(x=r.choice([r.uniform(-20, 100), float("nan")]) if r.random() < 0.1 else r.uniform(-20, 100),
                      y=r.uniform(-20, 80)) for _ in range(count)]
    labels = [r.choice([0, 1, 1, 2]) for _ in range(count if r.random() < 0.8 else count + 1)]
    box = r.choice([[], [], [5.0, 5.0, 40.0, 30.0], [30.0, 30.0, 5.0, 5.0], [0.0, 0.0, float("inf"), 9.0],
                    [1.0, 2.0, 3.0]])
    if not points and not box and r.random() < 0.5:
        points, labels = [Point32(x=10.0, y=10.0)], [1]
    mask = r.choice([None] * 8 + [(40, 50, "mono8", 0), (40, 50, "mono8", 7), (60, 80, "mono8", 0),
                                  (40, 50, "rgb8", 0), (1, 1, "mono8", 0), (40, 50, "16UC1", 0)])
    return {"points": points, "point_labels": labels, "box": box, "object_id": r.choice([-1, -1, 1, 2, 3, 300, 0]),
            "stamp": r.choice([0, 0, 1, 2, 3, 99]), "mask": mask}


def action_of(kind: str, seed: int) -> tuple:
    """Build one step from a seed.

    Hypothesis picks kinds and seeds (cheap to draw), a seeded generator the details, so each
    of the 2,000 steps costs microseconds to make.
    """
    r = random.Random(seed)
    if kind == "image":
        return ("image", r.choice(ENCODINGS), r.randint(1, 80), r.randint(1, 60), r.choice([0, 0, 1, 3]),
                r.choice([0, 1, 2, 3, 1_000_000_007]), r.random() < 0.1)
    if kind == "prompt":
        return ("prompt", prompt_fields(r))
    if kind == "service":
        return ("service", r.choice(["add", "segment", "segment_image", "remove", "reset", "everything"]),
                [prompt_fields(r) for _ in range(r.randint(0, 3))], r.randint(-1, 4),
                (r.choice([-1, 0, 1, 2, 65]), r.choice([-1.0, 0.0, 0.5, 2.0, float("nan")]), r.random() < 0.3,
                 r.choice([0, 0, 1, 2, 99])))
    if kind == "parameter":
        return ("parameter", r.choice(PARAMETERS))
    if kind == "detections":
        boxes = [(r.uniform(-10, 90), r.uniform(-10, 70), r.uniform(-5, 60), r.uniform(-5, 60), r.random())
                 for _ in range(r.randint(0, 5))]
        return ("detections", boxes, r.choice([0, 1, 2]))
    return ("lifecycle", r.choice(["deactivate", "activate", "activate", "activate"]))


steps = st.lists(st.tuples(st.sampled_from(KINDS), st.integers(0, 2**32 - 1)), min_size=STEPS, max_size=STEPS)


def raw_image(encoding, width, height, pad, stamp_header, broken, rng) -> Image:
    rows = height * 3 // 2 if encoding in ("nv12", "nv21") else height
    step = width * CHANNEL_BYTES[encoding] + pad
    size = rows * step - (7 if broken else 0)
    data = rng.integers(0, 256, max(size, 0), dtype=np.uint8).tobytes()
    return Image(header=stamp_header, height=height, width=width, encoding=encoding, step=step, data=data)


def prompt_msg(fields, world) -> PromptMsg:
    msg = PromptMsg(header=header(fields["stamp"]), object_id=fields["object_id"], points=fields["points"],
                    point_labels=fields["point_labels"], box=fields["box"])
    if fields["mask"] is not None:  # of some frame's size or none, any encoding, maybe short of bytes
        height, width, encoding, short = fields["mask"]
        step = width * CHANNEL_BYTES.get(encoding, 3)
        msg.mask = Image(height=height, width=width, encoding=encoding, step=step,
                         data=(bytes([0, 255]) * height * step)[:height * step - short])
    return msg


def detection_array(boxes, stamp):
    """The shape of vision_msgs/Detection2DArray, which cannot be installed here."""
    detections = [SimpleNamespace(
        bbox=SimpleNamespace(center=SimpleNamespace(position=SimpleNamespace(x=x, y=y), theta=0.0),
                             size_x=w, size_y=h),
        results=[SimpleNamespace(hypothesis=SimpleNamespace(class_id="thing", score=score))])
        for x, y, w, h, score in boxes]
    return SimpleNamespace(header=header(stamp), detections=detections)


def sent_image(world, rng, height: int, width: int, stamp: int) -> Image:
    """A random rgb8 image a request carries, remembered as a frame the node may answer for."""
    world.frames += 1
    frame_id = f"fuzz {world.frames}"
    world.sent[frame_id] = (stamp, height, width)
    rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image(header=header(stamp, frame_id=frame_id), height=height, width=width, encoding="rgb8",
                 step=width * 3, data=rgb.tobytes())


def run(live, action, rng) -> None:
    running, world = live
    node, peer = running.node, running.peer
    kind = action[0]
    if kind == "image":
        _, encoding, width, height, pad, stamp, broken = action
        world.frames += 1
        frame_id = f"fuzz {world.frames}"
        world.sent[frame_id] = (stamp, height, width)
        peer.camera.publish(raw_image(encoding, width, height, pad, header(stamp, frame_id=frame_id), broken, rng))
    elif kind == "prompt":
        if node.inputs is not None:  # the prompt topic is subscribed while active only
            node.inputs.prompt_cb(prompt_msg(action[1], world))
    elif kind == "service":
        _, service, prompts, object_id, (points_per_side, threshold, with_image, stamp) = action
        messages = [prompt_msg(fields, world) for fields in prompts]
        if service == "everything":
            srv, name = SegmentEverything, "segment_everything"
            request = SegmentEverything.Request(points_per_side=points_per_side, pred_iou_thresh=threshold,
                                                stability_score_thresh=threshold, header=header(stamp))
            if with_image:
                request.image = sent_image(world, rng, 30, 40, 7)
        elif service in ("add", "segment", "segment_image"):
            request = (AddObjects if service == "add" else Segment).Request(prompts=messages)
            if service == "segment_image":
                request.image = sent_image(world, rng, 40, 50, 5)
            srv, name = (AddObjects, "add_objects") if service == "add" else (Segment, "segment")
        elif service == "remove":
            srv, name, request = RemoveObject, "remove_object", RemoveObject.Request(object_id=object_id)
        else:
            srv, name, request = Trigger, "reset", Trigger.Request()
        if name not in world.clients:
            world.clients[name] = peer.node.create_client(srv, f"{NODE}/{name}")
            assert world.clients[name].wait_for_service(timeout_sec=30), f"{name} never appeared"
        client = world.clients[name]
        if client.service_is_ready():
            world.calls.append((name, client.call_async(request)))
    elif kind == "parameter":
        name, value = action[1]
        node.set_parameters([Parameter(name, value=value)])
    elif kind == "detections":
        if node.lifecycle_state() == State.PRIMARY_STATE_ACTIVE:
            node.inputs.detections_cb(detection_array(action[1], action[2]))
    else:
        active = node.lifecycle_state() == State.PRIMARY_STATE_ACTIVE
        if action[1] == "deactivate" and active:
            node.trigger_deactivate()
        elif action[1] == "activate" and not active:
            node.trigger_activate()


def check(live) -> None:
    running, world = live
    node, peer = running.node, running.peer
    state = node.lifecycle_state()
    assert state in (State.PRIMARY_STATE_ACTIVE, State.PRIMARY_STATE_INACTIVE), state
    assert node.worker_alive() == (state == State.PRIMARY_STATE_ACTIVE)
    assert running.thread.is_alive(), "the executor thread died"
    for result in peer.results[world.checked_results:]:
        assert result.header.frame_id in world.sent, f"result for a frame never sent: {result.header}"
        stamp, height, width = world.sent[result.header.frame_id]
        assert (result.header.stamp.sec, result.height, result.width) == (stamp, height, width), result.header
        for obj in result.objects:
            assert obj.box.x_offset + obj.box.width <= width and obj.box.y_offset + obj.box.height <= height
    world.checked_results = len(peer.results)
    for mask in peer.masks[world.checked_masks:]:
        stamp, height, width = world.sent[mask.header.frame_id]
        assert (mask.header.stamp.sec, mask.height, mask.width) == (stamp, height, width), mask.header
    world.checked_masks = len(peer.masks)
    assert node.counts().failed == 0, f"garbage counted as a model failure: {node.counts().last_error}"


def answered(live) -> None:
    running, world = live
    wait_until(lambda: all(future.done() for _, future in world.calls), 30,
               f"answers to {[name for name, future in world.calls if not future.done()]}")
    for name, future in world.calls:
        response = future.result()
        assert response.success or response.message, f"{name} failed without saying why"
        result = getattr(response, "result", None)
        if response.success and result is not None and result.header.frame_id:
            stamp, height, width = world.sent[result.header.frame_id]
            assert (result.height, result.width) == (height, width)
    world.calls.clear()


def play(live, kinds_and_seeds, action=action_of, send=run) -> None:
    """Send a sequence's steps, the node's promises checked after each, then wait for every call's answer."""
    rng = np.random.default_rng(kinds_and_seeds[0][1])
    for kind, seed in kinds_and_seeds:
        send(live, action(kind, seed), rng)
        check(live)
    answered(live)
    check(live)


@settings(max_examples=EXAMPLES, deadline=None, derandomize=not SEARCH, database=None, phases=[Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(steps)
def test_no_sequence_of_inputs_breaks_the_nodes_promises(live, kinds_and_seeds):
    play(live, kinds_and_seeds)
