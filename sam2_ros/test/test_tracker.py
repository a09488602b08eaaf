"""The streaming tracker: SAM 2 memory on a live stream, exact to Meta's SAM2VideoPredictor."""
import numpy as np
import pytest
import skimage

from conftest import SMALL, fail_on_step
from sam2_ros.core.prompts import Prompt
from sam2_ros.core.tracker import StreamingTracker, TrackerError
from sam2_ros.tools.meta_live import MetaLiveStream
from sam2_ros.tools.scenes import object_box, pan_clip

FRAMES = 30


def script(truths):
    """What a user does during the clip: frame -> list of (action, argument)."""
    h, w = truths[0].shape
    return {
        0: [("prompt", Prompt(object_id=1, box=object_box(truths[0])))],
        10: [("prompt", Prompt(object_id=2, points=np.array([[w * 0.8, h * 0.25]]),
                               point_labels=np.array([1])))],
        15: [("prompt", Prompt(object_id=1, points=np.array([[*object_box(truths[15])[:2] + 40]]),
                               point_labels=np.array([1])))],
        20: [("remove", 2)],
        # 25 frames in: a correction reads the pointers of the 15 frames before it (SAM 2's window)
        25: [("prompt", Prompt(object_id=1, points=np.array([[*object_box(truths[25])[:2] + 30]]),
                               point_labels=np.array([1])))],
    }


def run_ours(model, images, actions, batch_objects: bool = False, keep_objects: bool = False, tracker=None):
    """Each frame's masks by object id (`keep_objects`: the tracker's whole result per object).

    `tracker`: one made by the caller (other limits), else one on `model` (batch_objects False: Meta's loop).
    """
    tracker = tracker or StreamingTracker(model, batch_objects=batch_objects)
    masks = {}
    for t, image in enumerate(images):
        for kind, arg in actions.get(t, []):
            if kind == "remove":
                tracker.remove(arg)
        result = tracker.track(image)
        for kind, arg in actions.get(t, []):
            if kind == "prompt":
                _, result = tracker.add_prompt(arg)
        masks[t] = {obj.object_id: obj if keep_objects else obj.mask for obj in result.objects}
    return masks


def run_meta(checkpoint, images, actions):
    meta = MetaLiveStream(checkpoint, images, SMALL)
    masks = {}
    for t in range(len(images)):
        for kind, arg in actions.get(t, []):
            if kind == "remove":
                meta.remove(arg)
        masks[t] = meta.track(t)
        for kind, arg in actions.get(t, []):
            if kind == "prompt":
                masks[t] = meta.add_prompt(t, arg)
    return masks


def test_masks_equal_meta_video_predictor_driven_live(small_model, checkpoint):
    images, truths = pan_clip(FRAMES)
    actions = script(truths)
    ours = run_ours(small_model, images, actions)
    meta = run_meta(checkpoint, images, actions)
    assert ours.keys() == meta.keys() == set(range(FRAMES))
    for t in range(FRAMES):
        assert ours[t].keys() == meta[t].keys(), f"frame {t}: objects {ours[t].keys()} vs {meta[t].keys()}"
        for object_id in ours[t]:
            diff = np.count_nonzero(ours[t][object_id] != meta[t][object_id])
            assert diff == 0, f"frame {t}, object {object_id}: {diff} pixels differ from Meta"
    assert set(ours[12]) == {1, 2} and set(ours[25]) == {1}


def test_background_clicks_and_corrections_that_only_remove_equal_meta_video_predictor(small_model, checkpoint):
    """Negative clicks at every step a user takes them: with the first click, alone as a correction, in a batch.

    A second prompt on the same frame refines the first: Meta feeds the first one's logits back with it.
    """
    images, truths = pan_clip(16)
    h, w = truths[0].shape
    x0, y0, x1, y1 = object_box(truths[0])
    trim = object_box(truths[8])[2:] - 6  # inside the object's box on frame 8, near its corner
    actions = {
        0: [("prompt", Prompt(object_id=1, points=np.array([[(x0 + x1) / 2, (y0 + y1) / 2], [w * 0.9, h * 0.1]]),
                              point_labels=np.array([1, 0])))],
        5: [("prompt", Prompt(object_id=2, points=np.array([[w * 0.75, h * 0.5], [w * 0.75, h * 0.2]]),
                              point_labels=np.array([1, 0]))),
            ("prompt", Prompt(object_id=2, points=np.array([[w * 0.7, h * 0.45]]), point_labels=np.array([1])))],
        8: [("prompt", Prompt(object_id=1, points=trim[None], point_labels=np.array([0]))),
            ("prompt", Prompt(object_id=1, points=trim[None] - 20, point_labels=np.array([0])))],
        12: [("prompt", Prompt(object_id=2, points=np.array([[w * 0.6, h * 0.6]]), point_labels=np.array([0])))],
    }
    ours = run_ours(small_model, images, actions)
    meta = run_meta(checkpoint, images, actions)
    for t in range(len(images)):
        assert ours[t].keys() == meta[t].keys(), f"frame {t}: objects {ours[t].keys()} vs {meta[t].keys()}"
        for object_id in ours[t]:
            diff = np.count_nonzero(ours[t][object_id] != meta[t][object_id])
            assert diff == 0, f"frame {t}, object {object_id}: {diff} pixels differ from Meta"
    assert set(ours[13]) == {1, 2}


@pytest.fixture
def tracker(small_model):
    return StreamingTracker(small_model, max_objects=2)


def test_an_object_can_be_added_long_after_tracking_began(tracker):
    images, truths = pan_clip(8)
    tracker.track(images[0])
    tracker.add_prompt(Prompt(object_id=1, box=object_box(truths[0])))
    for image in images[1:6]:
        tracker.track(image)
    new_id, result = tracker.add_prompt(Prompt(box=object_box(truths[5]) + 10))
    assert new_id == 2 and [o.object_id for o in result.objects] == [1, 2]
    result = tracker.track(images[6])
    assert [o.object_id for o in result.objects] == [1, 2] and result.frame_index == 6
    assert all(o.mask.shape == truths[0].shape for o in result.objects)


def test_removal_and_reset_take_effect_on_the_next_frame(tracker):
    images, truths = pan_clip(4)
    tracker.track(images[0])
    tracker.add_prompt(Prompt(object_id=1, box=object_box(truths[0])))
    tracker.add_prompt(Prompt(object_id=5, points=np.array([[30, 30]]), point_labels=np.array([1])))
    tracker.remove(5)
    assert [o.object_id for o in tracker.track(images[1]).objects] == [1]
    tracker.reset()
    assert tracker.track(images[2]).objects == [] and tracker.retained_tensor_bytes() == 0


def test_removing_an_unknown_id_names_the_tracked_ones(tracker):
    images, truths = pan_clip(1)
    tracker.track(images[0])
    tracker.add_prompt(Prompt(object_id=3, box=object_box(truths[0])))
    with pytest.raises(TrackerError, match=r"no object with id 9 \(tracked ids: 3\)"):
        tracker.remove(9)


def test_more_objects_than_allowed_is_refused_and_the_others_are_kept(tracker):
    images, truths = pan_clip(2)
    tracker.track(images[0])
    for object_id in (1, 2):
        tracker.add_prompt(Prompt(object_id=object_id, box=object_box(truths[0])))
    with pytest.raises(TrackerError, match=r"already tracking 2 objects \(max_objects 2\)"):
        tracker.add_prompt(Prompt(object_id=3, box=object_box(truths[0])))
    assert [o.object_id for o in tracker.track(images[1]).objects] == [1, 2]


def test_prompting_before_any_frame_is_refused(tracker):
    with pytest.raises(TrackerError, match="no frame yet"):
        tracker.add_prompt(Prompt(object_id=1, box=np.array([0, 0, 5, 5])))


def test_a_mask_prompt_follows_metas_add_new_mask_on_every_later_frame(small_model, checkpoint):
    """Mask prompts match Meta's predictor to within a few boundary pixels, not bit for bit.

    Measured: at most 2 of 76,800 pixels differ on any frame (also for an object prompted by a
    box once another is added by a mask); the cause is not found yet (README, Tracking).
    """
    images, truths = pan_clip(6)
    actions = {0: [("prompt", Prompt(object_id=1, mask=truths[0]))],
               3: [("prompt", Prompt(object_id=2, mask=truths[3] & (np.arange(truths[3].shape[1]) % 2 == 0)))]}
    ours, meta = run_ours(small_model, images, actions), run_meta(checkpoint, images, actions)
    for t in range(len(images)):
        assert ours[t].keys() == meta[t].keys(), t
        for object_id in ours[t]:
            diff = np.count_nonzero(ours[t][object_id] != meta[t][object_id])
            assert diff <= 4, f"frame {t}, object {object_id}: {diff} pixels differ from Meta"
        assert ours[t][1].sum() > 0  # not trivially equal: the object is there
    assert ours[5].keys() == {1, 2}


@pytest.mark.parametrize("cap, prompted, kept, drops", [
    (3, 6, [0, 4, 5], [{1: [1]}, {1: [2]}, {1: [3]}]),  # each one past the cap drops the oldest but the first
    (1, 2, [1], [{1: [0]}]),  # a cap of one keeps the newest prompt
])
def test_conditioning_frames_are_capped_keeping_the_first_and_newest(small_model, cap, prompted, kept, drops):
    tracker = StreamingTracker(small_model, max_cond_frames=cap)
    images, truths = pan_clip(prompted)
    seen = []
    for t, image in enumerate(images):  # a prompt on every frame
        seen.append(tracker.track(image).dropped_cond_frames)
        tracker.add_prompt(Prompt(object_id=1, box=object_box(truths[t])))
    seen.append(tracker.track(images[0]).dropped_cond_frames)  # the last prompt's frame ends
    assert sorted(tracker.objects[1].cond) == kept and [d for d in seen if d] == drops


def test_retained_memory_stops_growing_once_sams_windows_are_full(small_model):
    tracker = StreamingTracker(small_model)
    images, truths = pan_clip(40)
    tracker.track(images[0])
    tracker.add_prompt(Prompt(object_id=1, box=object_box(truths[0])))
    tracker.add_prompt(Prompt(object_id=2, points=np.array([[250, 50]]), point_labels=np.array([1])))
    sizes = []
    for image in images[1:]:
        tracker.track(image)
        sizes.append(tracker.retained_tensor_bytes())
    window = small_model.sam.max_obj_ptrs_in_encoder + 1
    assert len(set(sizes[window:])) == 1, f"retained bytes still change: {sizes[window:]}"
    assert all(len(obj.non_cond) <= small_model.sam.max_obj_ptrs_in_encoder
               for obj in tracker.objects.values())


def test_a_correction_without_a_label_keeps_the_objects_label_and_one_with_a_label_renames_it(tracker):
    images, truths = pan_clip(1)
    tracker.track(images[0])
    tracker.add_prompt(Prompt(object_id=1, box=object_box(truths[0]), label="cat"))
    click = np.array([[*object_box(truths[0])[:2] + 10]])
    tracker.add_prompt(Prompt(object_id=1, points=click, point_labels=np.array([1])))
    assert [o.label for o in tracker.current()] == ["cat"]
    tracker.add_prompt(Prompt(object_id=1, points=click, point_labels=np.array([1]), label="kitten"))
    assert [o.label for o in tracker.current()] == ["kitten"]


def test_new_objects_take_the_smallest_free_id_so_ids_fit_a_mono8_label_image(tracker):
    images, truths = pan_clip(1)
    tracker.track(images[0])
    box = object_box(truths[0])
    assert tracker.add_prompt(Prompt(box=box))[0] == 1
    assert tracker.add_prompt(Prompt(box=box))[0] == 2
    tracker.remove(1)
    assert tracker.add_prompt(Prompt(box=box))[0] == 1


def two_objects(model, images, truths) -> StreamingTracker:
    tracker = StreamingTracker(model)
    tracker.track(images[0])
    tracker.add_prompt(Prompt(object_id=1, box=object_box(truths[0])))
    tracker.add_prompt(Prompt(object_id=2, points=np.array([[250.0, 50.0]]), point_labels=np.array([1])))
    tracker.track(images[1])
    return tracker


def test_a_frame_that_fails_on_its_second_object_leaves_every_object_as_before(small_model, monkeypatch):
    images, truths = pan_clip(5)
    reference = two_objects(small_model, images, truths)
    tracker = two_objects(small_model, images, truths)
    fail_on_step(monkeypatch, tracker, 2)
    with pytest.raises(RuntimeError, match="out of memory"):
        tracker.track(images[2])
    assert tracker.frame_index == 1 and [o.object_id for o in tracker.current()] == [1, 2]
    monkeypatch.undo()
    for image in (images[3], images[4]):  # as if the failed frame had never come
        ours, theirs = tracker.track(image), reference.track(image)
        for mine, expected in zip(ours.objects, theirs.objects, strict=True):
            np.testing.assert_array_equal(mine.mask, expected.mask)
            assert mine.score == expected.score and ours.frame_index == theirs.frame_index


def test_a_batch_of_prompts_that_fails_part_way_changes_nothing(small_model, monkeypatch):
    images, truths = pan_clip(4)
    reference = two_objects(small_model, images, truths)
    tracker = two_objects(small_model, images, truths)
    fail_on_step(monkeypatch, tracker, 2)
    with pytest.raises(RuntimeError), tracker.transaction():
        tracker.add_prompt(Prompt(object_id=1, points=np.array([[60.0, 60.0]]), point_labels=np.array([0])))
        tracker.add_prompt(Prompt(object_id=3, box=np.array([10, 10, 80, 80], np.float32)))
    monkeypatch.undo()
    assert sorted(tracker.objects) == [1, 2] and tracker.objects[1].pending is None
    for image in images[2:]:
        for mine, expected in zip(tracker.track(image).objects, reference.track(image).objects, strict=True):
            np.testing.assert_array_equal(mine.mask, expected.mask)


def test_a_batch_failing_on_its_last_prompt_undoes_the_object_added_and_the_one_corrected_before(
        small_model, monkeypatch):
    """Fail late: after a new object and a correction went through, the third step fails."""
    images, truths = pan_clip(5)
    reference = two_objects(small_model, images, truths)
    tracker = two_objects(small_model, images, truths)
    before = {i: (o.label, o.pending, len(o.cond)) for i, o in tracker.objects.items()}
    shown = [(o.object_id, o.mask) for o in tracker.current()]
    fail_on_step(monkeypatch, tracker, 3)
    with pytest.raises(RuntimeError), tracker.transaction():
        tracker.add_prompt(Prompt(object_id=3, box=np.array([10, 10, 80, 80], np.float32)))  # step 1: added
        tracker.add_prompt(Prompt(object_id=1, points=np.array([[60.0, 60.0]]), point_labels=np.array([0]),
                                  label="mug"))  # step 2: corrected and renamed
        tracker.add_prompt(Prompt(object_id=2, points=np.array([[240.0, 60.0]]), point_labels=np.array([1])))  # 3
    monkeypatch.undo()
    assert sorted(tracker.objects) == [1, 2]
    assert {i: (o.label, o.pending, len(o.cond)) for i, o in tracker.objects.items()} == before
    for (object_id, mask), now in zip(shown, tracker.current(), strict=True):  # the frame's masks as before
        assert now.object_id == object_id and np.array_equal(now.mask, mask)
    for image in images[2:]:  # as if the batch had never been sent
        for mine, expected in zip(tracker.track(image).objects, reference.track(image).objects, strict=True):
            np.testing.assert_array_equal(mine.mask, expected.mask)
            assert mine.score == expected.score


def test_a_refused_prompt_leaves_no_half_made_object(tracker, monkeypatch):
    images, truths = pan_clip(2)
    tracker.track(images[0])
    fail_on_step(monkeypatch, tracker, 1)
    with pytest.raises(RuntimeError):
        tracker.add_prompt(Prompt(object_id=4, box=object_box(truths[0]), label="cat"))
    assert tracker.objects == {} and tracker.current() == []
    monkeypatch.undo()
    assert tracker.track(images[1]).objects == []


def test_a_mask_mixed_with_clicks_is_refused_before_anything_changes(tracker):
    images, truths = pan_clip(1)
    tracker.track(images[0])
    with pytest.raises(TrackerError, match="a binary mask alone"):
        tracker.add_prompt(Prompt(object_id=1, mask=truths[0], box=object_box(truths[0])))
    assert tracker.objects == {}


def test_without_sams_cuda_extension_hole_filling_is_skipped_quietly_as_meta_skips_it(tracker):
    import warnings

    from sam2_ros.core.tracker import HOLE_FILLING
    if HOLE_FILLING:
        pytest.skip("sam2 has its CUDA extension here: holes are filled")
    images, truths = pan_clip(2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tracker.track(images[0])
        tracker.add_prompt(Prompt(object_id=1, box=object_box(truths[0])))
        tracker.track(images[1])
    assert not [w for w in caught if "cannot import name '_C'" in str(w.message)]


def batched_and_reference(model, images, actions) -> list[tuple[dict, dict]]:
    """Both paths on the same encoded frames; per frame: {object id: (mask, score, presence)} each."""
    from sam2_ros.core.encoding import encode
    trackers = [StreamingTracker(model, batch_objects=True), StreamingTracker(model, batch_objects=False)]
    frames = []
    for t, image in enumerate(images):
        encoded = encode(model, image)
        seen = []
        for tracker in trackers:
            for kind, arg in actions.get(t, []):
                if kind == "remove":
                    tracker.remove(arg)
            result = tracker.track(image, encoded)
            for kind, arg in actions.get(t, []):
                if kind == "prompt":
                    _, result = tracker.add_prompt(arg)
            seen.append({o.object_id: (o.mask, o.score, o.presence) for o in result.objects})
        frames.append(tuple(seen))
    return frames


def worst_agreement(frames) -> tuple[float, float, list[float]]:
    """Lowest share of equal pixels over every frame and object, largest score gap, per-frame lowest share."""
    per_frame, gap = [], 0.0
    for batched, reference in frames:
        assert batched.keys() == reference.keys()
        shares = [1.0]
        for object_id, (mask, score, presence) in batched.items():
            ref_mask, ref_score, ref_presence = reference[object_id]
            shares.append(float(np.mean(mask == ref_mask)))
            gap = max(gap, abs(score - ref_score), abs(presence - ref_presence))
        per_frame.append(min(shares))
    return min(per_frame), gap, per_frame


def test_batched_tracking_equals_the_per_object_reference_with_late_corrected_and_removed_objects(small_model):
    """Batched kernels may round apart: masks within 0.01 % of pixels, scores within 1e-4, no drift."""
    images, truths = pan_clip(FRAMES)
    h, w = truths[0].shape
    click = lambda x, y, i: Prompt(object_id=i, points=np.array([[w * x, h * y]]), point_labels=np.array([1]))  # noqa: E731
    actions = {0: [("prompt", Prompt(object_id=1, box=object_box(truths[0]))), ("prompt", click(0.8, 0.25, 2)),
                   ("prompt", click(0.5, 0.8, 3))],  # three objects of one memory layout: one batch
               8: [("prompt", click(0.2, 0.2, 4))],  # added late: a layout of its own
               15: [("prompt", click(0.82, 0.3, 2))],  # corrected: leaves the batch
               20: [("remove", 3)]}
    frames = batched_and_reference(small_model, images, actions)
    worst, gap, per_frame = worst_agreement(frames)
    assert worst >= 0.9999 and gap <= 1e-4, (worst, gap)
    assert min(per_frame[-5:]) >= 0.9999, "no drift: the last frames are as close as the first"
    assert frames[12][0].keys() == {1, 2, 3, 4} and frames[25][0].keys() == {1, 2, 4}


def test_on_a_longer_clip_two_objects_batched_never_drift_from_the_reference(small_model):
    images, truths = pan_clip(48, zoom=0.3)
    h, w = truths[0].shape
    actions = {0: [("prompt", Prompt(object_id=1, box=object_box(truths[0]))),
                   ("prompt", Prompt(object_id=2, points=np.array([[w * 0.7, h * 0.3]]), point_labels=np.array([1])))]}
    worst, gap, per_frame = worst_agreement(batched_and_reference(small_model, images, actions))
    assert worst >= 0.9999 and gap <= 1e-4, (worst, gap)
    assert min(per_frame[-8:]) >= 0.9999


def test_on_the_cpu_one_step_batches_about_1024_image_tokens_of_objects_of_one_layout(small_model, full_model):
    from sam2_ros.core.tracker import TrackedObject
    tracker = StreamingTracker(small_model, max_objects=16)  # 256: 16 x 16 tokens per object, 4 per step
    tracker.objects = {i: TrackedObject(i, "", cond={0: {}}) for i in range(1, 11)}  # prompted on frame 0
    tracker.objects[11] = TrackedObject(11, "", cond={3: {}})  # prompted on frame 3: a layout of its own
    assert [len(group) for group in tracker._groups()] == [4, 4, 2, 1]
    assert [obj.object_id for obj in tracker._groups()[2]] == [9, 10]
    tracker = StreamingTracker(full_model, max_objects=8)  # 1024: 64 x 64 tokens, one object per step
    tracker.objects = {i: TrackedObject(i, "", cond={0: {}}) for i in range(1, 4)}
    assert [[obj.object_id for obj in group] for group in tracker._groups()] == [[1], [2], [3]]


def test_objects_stepped_one_by_one_share_the_frames_own_self_attention(small_model):
    """The memory attention's first self-attention reads only the frame: once a frame, not once an object.

    Its exactness is Meta's: test_masks_equal_meta_video_predictor_driven_live steps two objects
    one by one and compares every pixel.
    """
    images, truths = pan_clip(3)
    h, w = truths[0].shape
    tracker = StreamingTracker(small_model, batch_objects=False)  # one SAM 2 step per object
    tracker.track(images[0])
    for object_id, (x, y) in enumerate(((0.3, 0.3), (0.7, 0.3), (0.5, 0.7)), start=1):
        tracker.add_prompt(Prompt(object_id=object_id, points=np.array([[w * x, h * y]]), point_labels=np.array([1])))
    layers = small_model.sam.memory_attention.layers
    calls = [0] * len(layers)

    def counter(index):
        return lambda *_: calls.__setitem__(index, calls[index] + 1)
    hooks = [layer.self_attn.register_forward_hook(counter(i)) for i, layer in enumerate(layers)]
    try:
        for image in images[1:]:
            assert len(tracker.track(image).objects) == 3
    finally:
        for hook in hooks:
            hook.remove()
    assert calls == [2] + [6] * (len(layers) - 1), "first layer once a frame, the others once an object a frame"


def test_a_batched_frame_that_fails_leaves_every_object_as_before(small_model, monkeypatch):
    images, truths = pan_clip(5)
    reference, tracker = (two_objects(small_model, images, truths) for _ in range(2))
    assert len(tracker._groups()) == 1, "both objects were prompted on frame 0: one batch"
    real = tracker.model.sam._track_step

    def out_of_memory(*args, **kwargs):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
    monkeypatch.setattr(tracker.model.sam, "_track_step", out_of_memory)
    with pytest.raises(RuntimeError, match="out of memory"):
        tracker.track(images[2])
    monkeypatch.setattr(tracker.model.sam, "_track_step", real)
    assert tracker.frame_index == 1
    for image in (images[3], images[4]):
        for mine, expected in zip(tracker.track(image).objects, reference.track(image).objects, strict=True):
            np.testing.assert_array_equal(mine.mask, expected.mask)


def test_a_mask_prompts_edge_that_scales_down_to_exactly_half_is_inside_as_in_metas_add_new_mask(
        small_model, checkpoint):
    """512 pixels to input size 256: antialiasing weighs columns 2i-1..2i+2 by 1/8, 3/8, 3/8, 1/8.

    So a mask starting at odd column 2i+1 covers input column i by exactly 1/2, which Meta counts in (>= 0.5).
    """
    photo = skimage.data.astronaut()  # 512 x 512
    images = [photo, np.roll(photo, 4, axis=1), np.roll(photo, 8, axis=1)]
    mask = np.zeros((512, 512), bool)
    mask[101:301, 151:351] = True
    actions = {0: [("prompt", Prompt(object_id=1, mask=mask))]}
    ours, meta = run_ours(small_model, images, actions), run_meta(checkpoint, images, actions)
    for t in range(len(images)):
        diff = np.count_nonzero(ours[t][1] != meta[t][1])
        assert diff <= 4, f"frame {t}: {diff} pixels differ from Meta"
