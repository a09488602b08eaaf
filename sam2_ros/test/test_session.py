"""The tracking session on its own: frames and prompts in, recorded outputs, no executor, no topics."""
import threading
import time

import cv2
import numpy as np
import pytest
from detectors import save_grounding_dino
from test_everything import meta_generate

from conftest import photo
from sam2_ros.core import settings as S
from sam2_ros.core.everything import EverythingSettings
from sam2_ros.core.frames import FrameNotKept, FrameNotYet
from sam2_ros.core.prompts import ASSIGN_NEW_ID, Detections, Prompt, PromptError
from sam2_ros.core.segmenter import Segmenter
from sam2_ros.core.session import SettingsChanged, TrackingSession
from sam2_ros.core.tracker import StreamingTracker, TrackerError


def config(**values) -> S.NodeConfig:
    return S.NodeConfig().changed(checkpoint="unused.pt", image_size=256, **values)


def box(x0, y0, x1, y1, object_id=ASSIGN_NEW_ID, label="") -> Prompt:
    return Prompt(object_id=object_id, label=label, box=np.array([x0, y0, x1, y1], np.float32))


class Recorder:
    """What the session reports (the node logs and counts these)."""

    def __init__(self):
        self.notes = []

    def __call__(self, message, error):
        self.notes.append(message)


def test_a_frame_and_a_box_give_the_core_trackers_masks_and_readers_see_the_objects(small_model):
    settings = config()
    session = TrackingSession(small_model, settings, Recorder())
    image = photo("astronaut")
    session.process(1, "header 1", 1, image, settings)
    ids, frame, objects = session.apply([box(100, 50, 400, 480, label="person")], 1, settings)
    core = StreamingTracker(small_model)
    core.track(image)
    _, expected = core.add_prompt(box(100, 50, 400, 480, object_id=1))
    assert ids == [1] and frame.header == "header 1" and session.object_labels() == {1: "person"}
    np.testing.assert_array_equal(objects[0].mask, expected.objects[0].mask)
    processed = session.process(2, "header 2", 2, image, settings)
    assert processed.frame.header == "header 2" and [o.object_id for o in processed.objects] == [1]


def test_a_reader_gets_a_copy_and_never_sees_the_worker_change_it(small_model):
    settings = config(mode="image")
    session = TrackingSession(small_model, settings, Recorder())
    session.process(1, "header", 1, photo("coffee"), settings)
    session.apply([box(10, 10, 100, 100, object_id=3)], 0, settings)
    labels = session.object_labels()
    labels[99] = "mine"
    assert session.object_labels() == {3: ""}
    errors, done = [], threading.Event()

    def read():
        while not done.is_set():
            try:
                session.object_labels(), session.has_detector_boxes()
            except Exception as error:  # a reader iterating live state: "changed size during iteration"
                errors.append(error)
            time.sleep(0.0002)  # a reader in a tight loop holds the GIL for whole switch intervals
    reader = threading.Thread(target=read)
    reader.start()
    for round_ in range(20):  # the worker adds and removes objects while the reader reads
        session.apply([box(10 + round_, 10, 100, 100, object_id=4 + round_ % 3)], 0, settings)
        session.remove(4 + round_ % 3, settings)
    done.set()
    reader.join()
    assert errors == [] and session.object_labels() == {3: ""}


def test_a_refused_batch_changes_nothing_and_says_which_limit(small_model):
    settings = config(max_objects=2)
    session = TrackingSession(small_model, settings, Recorder())
    session.process(1, "header", 1, photo("coffee"), settings)
    with pytest.raises(TrackerError, match="cannot add 3 object"):
        session.apply([box(10, 10, 100, 100), box(200, 10, 300, 100), box(400, 10, 500, 100)], 0, settings)
    assert session.object_labels() == {}


def test_discovery_leaves_room_for_the_users_prompt(small_model):
    """Discovery never takes the last of max_objects: with one slot it adds nothing, with two one."""
    image = photo("coffee")
    for max_objects, discovered in ((1, 0), (2, 1)):
        settings = config(max_objects=max_objects, discover_max_objects=5, discover_period_s=0.001,
                          discover_min_area=50, discover_batches_per_frame=100, everything_points_per_side=8,
                          everything_pred_iou_thresh=0.0, everything_stability_score_thresh=0.0)
        session = TrackingSession(small_model, settings, Recorder())
        done = session.process(1, "header", 1, image, settings)
        outcome = session.discover(done.frame, settings)
        assert (len(outcome[0][0]) if outcome else 0) == discovered
        assert list(session.object_labels().values()) == ["unknown"] * discovered
        ids, _, _ = session.apply([box(10, 10, 100, 100, label="mine")], 0, settings)
        assert ids == [discovered + 1] and session.object_labels()[discovered + 1] == "mine"


def test_discovery_compares_a_pass_from_a_smaller_frame_with_the_objects_at_the_newest_frames_size(small_model):
    """A pass started on a 320x240 frame ends on a 640x480 one: what is tracked there is not found again.

    The oracle: Meta's generator on the small frame, its masks resized by OpenCV, the rule as a plain loop.
    """
    settings = config(discover_period_s=0.001, discover_min_area=10, discover_batches_per_frame=1,
                      discover_max_objects=8, everything_points_per_side=8, everything_points_per_batch=32,
                      everything_pred_iou_thresh=0.0, everything_stability_score_thresh=0.0)
    big = cv2.resize(photo("coffee"), (640, 480), interpolation=cv2.INTER_AREA)
    small = cv2.resize(big, (320, 240), interpolation=cv2.INTER_AREA)
    records = meta_generate(small_model, small, EverythingSettings(
        points_per_side=8, points_per_batch=32, pred_iou_thresh=0.0, stability_score_thresh=0.0))
    proposals = [cv2.resize(r["segmentation"].astype(np.uint8), (640, 480), interpolation=cv2.INTER_NEAREST)
                 .astype(bool) for r in records]
    session = TrackingSession(small_model, settings, Recorder())
    start = session.process(1, "small", 1, small, settings)
    assert session.discover(start.frame, settings) is None  # 64 points in batches of 32: half done
    newest = session.process(2, "big", 2, big, settings)
    _, _, objects = session.apply([Prompt(object_id=7, label="mine", mask=proposals[0])], 0, settings)
    taken, expected = [objects[0].mask], []
    for mask in proposals:
        area = np.count_nonzero(mask)
        if area >= 10 and len(expected) < 8 and all(np.count_nonzero(mask & t) <= 0.5 * area for t in taken):
            expected.append(mask)
            taken.append(mask)
    assert np.count_nonzero(proposals[0] & objects[0].mask) > 0.5 * np.count_nonzero(proposals[0])
    change, _ = session.discover(newest.frame, settings)
    added = change[0] if change else []
    assert len(added) == len(expected), "a proposal on object 7 was taken for a new object"
    assert sorted(session.object_labels()) == sorted([7, *added])


def test_image_mode_frames_never_reach_the_tracker_and_track_mode_prompts_wait_for_its_first_frame(small_model):
    image_mode, track_mode = config(mode="image"), config()
    session = TrackingSession(small_model, image_mode, Recorder())
    session.process(1, "image mode", 1, photo("coffee"), image_mode)
    session.admit(track_mode)  # no object yet: the parameter change is taken
    with pytest.raises(FrameNotYet, match="processed in image mode: track mode takes prompts from its next frame"):
        session.apply([box(10, 10, 100, 100)], 0, track_mode)
    session.process(2, "track mode", 2, photo("coffee"), track_mode)
    ids, frame, _ = session.apply([box(10, 10, 100, 100)], 0, track_mode)
    assert ids == [1] and frame.header == "track mode"


def test_a_text_prompt_alone_waits_for_the_first_frame_then_answers_on_the_newest_whatever_its_stamp(small_model,
                                                                                                     tmp_path):
    settings = config(text_detector=str(save_grounding_dino(tmp_path / "gd")))
    session = TrackingSession(small_model, settings, Recorder())
    try:
        with pytest.raises(FrameNotYet, match="no camera frame processed yet: a text prompt waits for the first"):
            session.apply([Prompt(text="cup")], 0, settings)
        assert session.text_phrases() == ()  # nothing put in force by a prompt that waits
        session.process(1, "header 1", 10**9, photo("coffee"), settings)
        session.process(2, "header 2", 2 * 10**9, photo("coffee"), settings)
        with pytest.raises(FrameNotKept, match="older than every frame"):  # a box stamped before every kept frame
            session.apply([box(10, 10, 100, 100)], 1, settings)
        ids, frame, objects = session.apply([Prompt(text="cup . red ball")], 1, settings)  # the same stamp
        assert ids == [ASSIGN_NEW_ID] and frame.header == "header 2" and objects == []
        assert session.text_phrases() == ("cup", "red ball")
    finally:
        session.close()


def test_right_after_a_switch_to_track_mode_a_text_pass_adds_nothing_and_a_text_prompt_waits_for_a_tracked_frame(
        small_model, tmp_path):
    image_mode = config(mode="image", text_detector=str(save_grounding_dino(tmp_path / "gd")),
                        text_image_size=160, text_box_threshold=0.0, text_period_s=0.01)
    track_mode = image_mode.changed(mode="track")
    session = TrackingSession(small_model, image_mode, Recorder())

    def text_pass(settings):
        for _ in range(20_000):
            if (outcome := session.text_step(settings, 0.05)) is not None:
                return outcome
            time.sleep(0.001)  # the detector loads on a thread of its own first
        raise AssertionError("no pass ended")
    try:
        session.process(1, "image mode", 1, photo("coffee"), image_mode)
        session.apply([Prompt(text="cup")], 0, image_mode)
        session.admit(track_mode)  # a text prompt is no object: the parameter change is taken
        change, found, _ = text_pass(track_mode)  # the newest frame is image mode's: the tracker has none
        assert found and change is None and session.object_labels() == {}
        with pytest.raises(FrameNotYet, match="processed in image mode: track mode takes prompts from its next frame"):
            session.apply([Prompt(text="cup")], 0, track_mode)
        session.process(2, "track mode", 2, photo("coffee"), track_mode)
        change, found, _ = text_pass(track_mode)
        assert change.frame.header == "track mode" and set(session.object_labels().values()) == {"cup"}
    finally:
        session.close()


def test_a_one_off_request_numbers_its_new_objects_with_the_smallest_ids_it_does_not_name(small_model):
    settings = config()
    session = TrackingSession(small_model, settings, Recorder())
    session.process(1, "header", 1, photo("coffee"), settings)
    objects, *_ = session.segment_once([box(10, 10, 100, 100), box(200, 10, 300, 100, object_id=1),
                                        box(10, 200, 100, 300)], 0, None, settings)
    assert [o.object_id for o in objects] == [2, 1, 3]
    with pytest.raises(PromptError, match=r"object ids \[1\] appear more than once"):
        session.segment_once([box(10, 10, 100, 100, object_id=1), box(200, 10, 300, 100, object_id=1)], 0, None,
                             settings)


@pytest.mark.parametrize("encoding, largest", [("mono8", 255), ("16UC1", 65535)])
def test_the_largest_id_the_label_image_carries_is_taken_and_the_next_refused(small_model, encoding, largest):
    settings = config(mode="image", mask_encoding=encoding)
    session = TrackingSession(small_model, settings, Recorder())
    session.process(1, "header", 1, photo("coffee"), settings)
    assert session.apply([box(10, 10, 100, 100, object_id=largest)], 0, settings)[0] == [largest]
    with pytest.raises(PromptError, match=fr"object id {largest + 1} does not fit the {encoding} label image"):
        session.apply([box(10, 10, 100, 100, object_id=largest + 1)], 0, settings)
    assert session.object_labels() == {largest: ""}


def test_a_prompt_checked_before_the_label_encoding_changed_adds_nothing_and_runs_again_under_the_new_one(
        small_model):
    wide, narrow = config(mask_encoding="16UC1"), config(mask_encoding="mono8")
    session = TrackingSession(small_model, wide, Recorder())
    session.process(1, "header", 1, photo("coffee"), wide)
    session.admit(narrow)  # the parameter thread, just after the worker took `wide` for this prompt
    with pytest.raises(SettingsChanged, match=r"changed to \('track', 'mono8', 16\) .* it runs again"):
        session.apply([box(10, 10, 100, 100, object_id=300)], 0, wide)
    assert session.object_labels() == {}
    with pytest.raises(PromptError, match="object id 300 does not fit the mono8 label image"):
        session.apply([box(10, 10, 100, 100, object_id=300)], 0, narrow)


@pytest.mark.parametrize("mode, sam2_step", [("track", "_tracker.add_prompt"), ("image", "_segmenter.predict")])
def test_while_sam2_adds_objects_no_setting_they_would_not_fit_is_admitted(small_model, monkeypatch, mode, sam2_step):
    """The parameter thread asks while SAM 2 takes the prompts: the moment a change used to slip in."""
    wide = config(mode=mode, mask_encoding="16UC1")
    other_mode = "image" if mode == "track" else "track"
    session = TrackingSession(small_model, wide, Recorder())
    session.process(1, "header", 1, photo("coffee"), wide)
    answers = []

    def parameter_thread(**change):
        def ask():
            try:
                session.admit(wide.changed(**change))
                answers.append("taken")
            except ValueError as error:
                answers.append(str(error))
        thread = threading.Thread(target=ask)
        thread.start()
        thread.join()

    owner, name = sam2_step.split(".")
    step = getattr(getattr(session, owner), name)

    def while_sam2_runs(*args, **kwargs):
        if not answers:
            parameter_thread(mask_encoding="mono8")
            parameter_thread(mode=other_mode)
            parameter_thread(max_objects=1)
        return step(*args, **kwargs)
    monkeypatch.setattr(getattr(session, owner), name, while_sam2_runs)
    ids, _, objects = session.apply([box(10, 10, 100, 100, object_id=300), box(200, 10, 300, 100)], 0, wide)
    assert answers == ["object ids [300] do not fit a mono8 label image: remove them first",
                       "cannot change mode while objects are being added: try again",
                       "2 objects are tracked, more than max_objects 1: remove some first"]
    assert ids == [300, 1] and session.object_labels() == {300: "", 1: ""}
    processed = session.process(2, "next", 2, photo("coffee"), wide)  # the settings in force are still `wide`
    assert sorted(o.object_id for o in processed.objects) == [1, 300]
    parameter_thread(mode=other_mode)
    assert answers[-1] == "cannot change mode while objects are tracked: call ~/reset first"


def test_a_detector_box_mostly_on_a_tracked_object_is_not_tracked_again_and_one_a_quarter_on_it_is(small_model):
    """The tracked object is a mask prompt: on its own frame SAM 2 returns that mask (to its border pixels)."""
    settings = config()
    session = TrackingSession(small_model, settings, Recorder())
    session.process(1, "header", 1, cv2.resize(photo("astronaut"), (640, 480), interpolation=cv2.INTER_AREA),
                    settings)
    square = np.zeros((480, 640), bool)
    square[100:300, 100:300] = True
    _, _, (tracked,) = session.apply([Prompt(object_id=1, mask=square)], 0, settings)
    assert np.count_nonzero(tracked.mask != square) < 0.02 * square.sum()
    inside = box(120, 120, 280, 280, label="on it")  # all of it on the object
    quarter = box(250, 100, 450, 300, label="beside it")  # columns 250..449: 50 of 200 on the object
    ids, _, _ = session.apply_detections(Detections([inside, quarter], []), 0, settings)
    assert ids == [2] and session.object_labels() == {1: "", 2: "beside it"}


def test_in_image_mode_the_prompts_in_force_move_with_a_change_of_camera_resolution(small_model):
    """A box drawn on a 640x480 frame covers the same part of the scene on a 320x240 one: halved by hand."""
    settings = config(mode="image")
    big = cv2.resize(photo("astronaut"), (640, 480), interpolation=cv2.INTER_AREA)
    small = cv2.resize(big, (320, 240), interpolation=cv2.INTER_AREA)
    session = TrackingSession(small_model, settings, Recorder())
    session.process(1, "big", 1, big, settings)
    session.apply([box(100, 40, 400, 470, object_id=1)], 0, settings)
    processed = session.process(2, "small", 2, small, settings)
    expected = Segmenter(small_model).segment(small, [box(50, 20, 200, 235, object_id=1)]).objects[0]
    np.testing.assert_array_equal(processed.objects[0].mask, expected.mask)


def test_in_track_mode_a_prompt_drawn_on_an_older_larger_frame_is_halved_onto_the_newest(small_model):
    """Tracking only moves forward: the box drawn on the 640x480 frame lands, halved by hand, on the 320x240 one."""
    settings = config()
    big = cv2.resize(photo("astronaut"), (640, 480), interpolation=cv2.INTER_AREA)
    small = cv2.resize(big, (320, 240), interpolation=cv2.INTER_AREA)
    session = TrackingSession(small_model, settings, Recorder())
    session.process(1, "big", 1, big, settings)
    session.process(2, "small", 2, small, settings)
    _, frame, (obj,) = session.apply([box(100, 40, 400, 470, object_id=1)], 1, settings)
    core = StreamingTracker(small_model)
    core.track(big)
    core.track(small)
    _, expected = core.add_prompt(box(50, 20, 200, 235, object_id=1))
    assert frame.header == "small"
    np.testing.assert_array_equal(obj.mask, expected.objects[0].mask)


def test_reset_in_image_mode_drops_every_prompt_in_force_and_counts_them(small_model):
    settings = config(mode="image")
    session = TrackingSession(small_model, settings, Recorder())
    session.process(1, "header", 1, photo("coffee"), settings)
    session.apply([box(10, 10, 100, 100), box(200, 10, 300, 100)], 0, settings)
    assert session.reset() == 2 and session.object_labels() == {}
    assert session.process(2, "header", 2, photo("coffee"), settings).objects == []


def test_discovery_stops_at_discover_max_objects_unknown_objects(small_model):
    """One unknown object allowed: the first pass adds one, and no later pass starts while it is tracked."""
    image = photo("coffee")
    settings = config(max_objects=8, discover_max_objects=1, discover_period_s=0.001, discover_min_area=50,
                      discover_batches_per_frame=100, everything_points_per_side=8,
                      everything_pred_iou_thresh=0.0, everything_stability_score_thresh=0.0)
    session = TrackingSession(small_model, settings, Recorder())
    first = session.process(1, "header", 1, image, settings)
    (ids, _, _), _ = session.discover(first.frame, settings)
    assert len(ids) == 1
    second = session.process(2, "header", 2, image, settings)
    assert session.discover(second.frame, settings) is None
    assert list(session.object_labels().values()) == ["unknown"]
