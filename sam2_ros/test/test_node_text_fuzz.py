"""Property-based abuse of a live node whose text prompt's detector is at work, over the real middleware.

Random sequences of text prompts (on the prompt topic, alone or with points and boxes; in
~/add_objects; as the text_prompt parameter), of any text (empty, only separators, 1,200
characters, control characters, words the detector's vocabulary lacks, sixty phrases), of the
text settings changed at run time, of camera frames (good and garbage), other prompts and
lifecycle transitions, while the detector's passes run in slices between frames. The detector
is a small Grounding DINO with seeded random weights whose boxes become objects. After every
step the node keeps test_node_fuzz's promises, and no result names an object twice; after
every sequence every call got its answer.

`SAM2_FUZZ_EXAMPLES=300` runs that many sequences with fresh random seeds (a search for
defects, outside the suite); the suite runs a fixed few.
"""
import os
import random
import time

import numpy as np
import pytest
from detectors import save_grounding_dino
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from lifecycle_msgs.msg import State
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image

from rosharness import NODE, Running, header, wait_until
from sam2_ros_interfaces.msg import Prompt as PromptMsg
from sam2_ros_interfaces.srv import AddObjects
from test_node_fuzz import World, action_of, play, prompt_fields, prompt_msg, run

SEARCH = int(os.environ.get("SAM2_FUZZ_EXAMPLES", 0))
EXAMPLES, STEPS = SEARCH or 3, 60
TEXTS = ("cup", "cup . red ball", "red ball . cup . cat", "", " . ", ".", "cup..ball", "  red   ball  ", "CUP . Red",
         "cup " * 300, "\x00cup\x07", "tasse à café 🙂", "zebra . giraffe", " . ".join(["cup"] * 60), "\n\t")
KINDS = ["frame"] * 4 + ["text_topic"] * 2 + ["text_service"] * 2 + ["text_parameter"] * 2 + [
    "pause", "setting", "image", "prompt", "service", "lifecycle"]
SETTINGS = [("text_max_objects", 1), ("text_max_objects", 8), ("text_keep_objects", False),
            ("text_keep_objects", True), ("text_box_threshold", 0.0), ("text_box_threshold", 0.2),
            ("text_box_threshold", 1.0), ("text_period_s", 0.1), ("text_period_s", 1.0), ("text_slice_ms", 1.0),
            ("text_slice_ms", 50.0), ("text_threshold", 0.0), ("text_threshold", 0.9), ("mode", "image"),
            ("mode", "track"), ("max_objects", 2), ("max_objects", 16)]


@pytest.fixture(scope="module")
def live(checkpoint, tmp_path_factory):
    detector = save_grounding_dino(tmp_path_factory.mktemp("gd") / "grounding_dino")
    harness = Running(checkpoint, text_detector=str(detector), text_image_size=160, text_box_threshold=0.2,
                      text_period_s=0.3, text_slice_ms=50.0, request_timeout_s=2.0, max_queued_requests=8)
    yield harness, World()
    harness.close()


def text_action(kind: str, seed: int) -> tuple:
    """Build one text step (or a good camera frame) from a seed; other kinds are test_node_fuzz's."""
    r = random.Random(seed)
    if kind == "frame":  # a good frame, so passes have something to find boxes in
        return ("frame", r.randint(32, 160), r.randint(24, 120), r.choice([1, 2, 3, 4]))
    if kind == "text_topic":
        return ("text_topic", r.choice(TEXTS), r.choice([-1, -1, 1, 5]), r.random() < 0.3, r.randint(0, 2**31))
    if kind == "text_service":
        return ("text_service", [r.choice(TEXTS) for _ in range(r.randint(1, 2))])
    if kind == "text_parameter":
        return ("text_parameter", r.choice(TEXTS))
    if kind == "pause":  # the camera leaves the model idle: passes run in the gap
        return ("pause", r.choice([0.1, 0.3, 0.6]))
    if kind == "setting":
        return ("parameter", r.choice(SETTINGS))
    return action_of(kind, seed)


def send(live, action, rng) -> None:
    running, world = live
    node, peer = running.node, running.peer
    kind = action[0]
    if kind == "frame":
        _, width, height, stamp = action
        world.frames += 1
        frame_id = f"fuzz {world.frames}"
        world.sent[frame_id] = (stamp, height, width)
        rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        peer.camera.publish(Image(header=header(stamp, frame_id=frame_id), height=height, width=width,
                                  encoding="rgb8", step=width * 3, data=rgb.tobytes()))
        if node.lifecycle_state() == State.PRIMARY_STATE_ACTIVE:  # at a camera's pace: passes run between frames
            wait_until(lambda: any(r.header.frame_id == frame_id for r in peer.results), 30, f"{frame_id}'s result")
    elif kind == "text_topic":
        _, text, object_id, with_geometry, seed = action
        msg = prompt_msg(prompt_fields(random.Random(seed)), world) if with_geometry else PromptMsg(object_id=object_id)
        msg.text = text
        if node.inputs is not None:  # the prompt topic is subscribed while active only
            node.inputs.prompt_cb(msg)
    elif kind == "text_service":
        if "add_objects" not in world.clients:
            world.clients["add_objects"] = peer.node.create_client(AddObjects, f"{NODE}/add_objects")
            assert world.clients["add_objects"].wait_for_service(timeout_sec=30), "add_objects never appeared"
        client = world.clients["add_objects"]
        if client.service_is_ready():
            request = AddObjects.Request(prompts=[PromptMsg(object_id=-1, text=text) for text in action[1]])
            world.calls.append(("add_objects", client.call_async(request)))
    elif kind == "text_parameter":
        node.set_parameters([Parameter("text_prompt", value=action[1])])
    elif kind == "pause":
        time.sleep(action[1])
    else:
        run(live, action, rng)


def no_object_twice(live) -> None:
    running, _ = live
    for result in running.peer.results:
        ids = [obj.object_id for obj in result.objects]
        assert len(ids) == len(set(ids)), f"an object twice in one result: {ids}"


steps = st.lists(st.tuples(st.sampled_from(KINDS), st.integers(0, 2**32 - 1)), min_size=STEPS, max_size=STEPS)


@settings(max_examples=EXAMPLES, deadline=None, derandomize=not SEARCH, database=None, phases=[Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(steps)
def test_no_sequence_of_text_prompts_and_settings_breaks_the_nodes_promises(live, kinds_and_seeds):
    play(live, kinds_and_seeds, text_action, send)
    no_object_twice(live)


def test_the_sequences_above_ran_the_detector_and_tracked_what_it_found(live):
    counts = live[0].node.counts()
    assert counts.text_passes > 0 and counts.text_added > 0, counts
