"""The tracking session: the only state the worker changes, and locked snapshots for everyone else.

It owns the tracker, the one-off segmenter, the ring of recent frames, image mode's prompts in
force and the discovery pass. Only the worker thread calls the methods that change them; any
thread may call the readers (`object_labels`, `has_detector_boxes`, `newest_stamp`), which copy
under the session's one lock. The lock is never held across SAM 2: the worker computes first and swaps
the result in under the lock.

Settings that bound the objects (mode, label encoding, max_objects) change through `admit`, on
the parameter thread, under that lock too: the worker adds objects only with the settings
admitted last, and holds the ids it adds until they are published, so a change never slips in
between a prompt's check and its objects (an id over 255 tracked under mono8, say).

The session neither publishes nor logs: each change returns the frame and the objects to
publish, and what went wrong is raised (refusals) or handed to `report` (one line each).
"""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Callable, NamedTuple

import numpy as np

from sam2_ros.core import settings as S
from sam2_ros.core.discovery import Discovery, resized
from sam2_ros.core.encoding import EncodedFrame, encode, for_prompts
from sam2_ros.core.everything import UNKNOWN, Everything, EverythingSettings, novel
from sam2_ros.core.frames import FrameMismatch, FrameNotYet, FrameRing, RecentFrame, stamp_text
from sam2_ros.core.model import LoadedModel
from sam2_ros.core.prompts import ASSIGN_NEW_ID, Detections, Prompt, PromptError, rescale, validate
from sam2_ros.core.segmenter import Segmenter
from sam2_ros.core.text import DetectorSpec, Found, TextError, load_detector, phrases_of
from sam2_ros.core.text_prompts import TextPrompts
from sam2_ros.core.tracker import StreamingTracker, TrackerError, check_trackable, first_free_id
from sam2_ros.core.work_queue import NotYet


class SettingsChanged(NotYet):
    """Mode, label encoding or max_objects changed after a prompt took its settings: it runs again with the new ones."""


class Adding(NamedTuple):
    """The objects a prompt adds while SAM 2 takes it: the ids it names, and how many new ones."""

    ids: frozenset[int]
    new: int


def bounds(config: S.NodeConfig) -> tuple[str, str, int]:
    """Return the settings every object must fit: mode, label image encoding, max_objects."""
    return config.tracking.mode, config.output.mask_encoding, config.tracking.max_objects


@dataclass(frozen=True)
class InForce:
    """Image mode: a prompt applied to every frame, in the pixels of the frame it was given on."""

    prompt: Prompt
    image_hw: tuple[int, int]
    from_detector: bool = False


@dataclass
class Processed:
    """One camera frame after SAM 2: what to publish, and what it cost."""

    frame: RecentFrame
    objects: list
    encode_ms: float
    decode_ms: float
    model_ms: float
    dropped_cond_frames: dict[int, list[int]]


# A text detector's box on a tracked object (box IoU with its mask's box at least this) is that object
# seen again: it keeps its id and nothing is added.
TEXT_MATCH_IOU = 0.5

# A service's segment-everything pass decodes about this many image tokens a call on the CPU
# (8 points at input size 256, 1 at 1024): a call is what a stop waits for, so it stays well
# under a second even when thresholds of 0 keep every mask.
SLICE_CALL_TOKENS = 2048

class Change(NamedTuple):
    """What a prompt, a detector's boxes or discovery changed, to be published."""

    ids: list[int]  # the objects touched
    frame: RecentFrame  # the frame to publish them on
    objects: list  # every object on that frame


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    w = max(min(a[2], b[2]) - max(a[0], b[0]), 0.0)
    h = max(min(a[3], b[3]) - max(a[1], b[1]), 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return float(w * h / union) if union > 0 else 0.0


def mask_box(mask: np.ndarray) -> np.ndarray:
    """Return the (x0, y0, x1, y1) pixel-edge box of a non-empty mask."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], np.float32)


def text_of(prompts: list[Prompt]) -> tuple[list[Prompt], tuple[str, ...] | None]:
    """Split off a request's text prompt (at most one, alone on its prompt) and read its phrases."""
    texts = [p for p in prompts if p.text]
    if not texts:
        return prompts, None
    if len(texts) > 1:
        raise PromptError(f"{len(texts)} text prompts in one request: give one, its phrases separated by '.'")
    text = texts[0]
    if text.object_id != ASSIGN_NEW_ID or len(text.points) or text.box is not None or text.mask is not None:
        raise PromptError("a text prompt names no object and carries no points, box or mask: its phrases "
                          "find the objects")
    try:
        return [p for p in prompts if not p.text], phrases_of(text.text)
    except TextError as error:
        raise PromptError(str(error)) from None


def assign_ids(prompts: list[Prompt]) -> list[Prompt]:
    """Give prompts asking for a new id the smallest ids no other prompt names; refuse repeats."""
    explicit = [p.object_id for p in prompts if p.object_id != ASSIGN_NEW_ID]
    repeated = sorted({i for i in explicit if explicit.count(i) > 1})
    if repeated:
        raise PromptError(f"object ids {repeated} appear more than once in one request")
    used, numbered = set(explicit), []
    for prompt in prompts:
        if prompt.object_id == ASSIGN_NEW_ID:
            prompt = replace(prompt, object_id=first_free_id(used))
            used.add(prompt.object_id)
        numbered.append(prompt)
    return numbered


class TrackingSession:
    """Tracker, segmenter, recent frames and prompts in force of one configured node."""

    def __init__(self, model: LoadedModel, config: S.NodeConfig, report: Callable[[str, Exception | str | None], None]):
        self.model = model
        self._tracker = StreamingTracker(model, max_objects=config.tracking.max_objects,
                                         max_cond_frames=config.model.max_cond_frames,
                                         batch_objects=config.tracking.batch_objects)
        self._segmenter = Segmenter(model, cache_size=1)  # one-off images only: frames live in the ring
        self._ring = FrameRing(config.tracking.recent_frames)
        self._report = report
        self._in_force: dict[int, InForce] = {}
        self._discovery = Discovery(model)
        self._lock = threading.Lock()
        self._labels: dict[int, str] = {}  # id -> label of every object, as readers see it
        self._detector_ids: frozenset[int] = frozenset()
        self._newest_stamp: int | None = None  # the stamp of the newest frame SAM 2 processed, as readers see it
        self._bounds = bounds(config)  # as admitted last (under the lock)
        self._adding: Adding | None = None  # what the worker is adding now (under the lock)
        spec = DetectorSpec(config.text.detector, config.model.device, config.text.image_size)
        self._text = TextPrompts(lambda: load_detector(spec))
        self._text_boxes: dict[int, np.ndarray] = {}  # object the text prompt added -> its latest detector box
        self._text_param = ""  # the text_prompt parameter as last applied

    # ----- readers (any thread) -----
    def object_labels(self) -> dict[int, str]:
        """Every object (tracked, or in force in image mode) and its label: a copy."""
        with self._lock:
            return dict(self._labels)

    def has_detector_boxes(self) -> bool:
        with self._lock:
            return bool(self._detector_ids)

    def newest_stamp(self) -> int | None:
        """Return the stamp (ns) of the newest camera frame SAM 2 has processed; None before the first."""
        with self._lock:
            return self._newest_stamp

    def admit(self, config: S.NodeConfig) -> None:
        """Take new settings if every object, tracked or being added, fits them; raise ValueError otherwise.

        The parameter callback's (any thread); it never waits for SAM 2.
        """
        new_bounds = bounds(config)
        mode, encoding, max_objects = new_bounds
        with self._lock:
            adding = self._adding or Adding(frozenset(), 0)
            ids = self._labels.keys() | adding.ids
            if mode != self._bounds[0] and self._labels:
                raise ValueError("cannot change mode while objects are tracked: call ~/reset first")
            if mode != self._bounds[0] and self._adding is not None:
                raise ValueError("cannot change mode while objects are being added: try again")
            if misfits := S.unlabelled(ids, encoding):
                raise ValueError(f"object ids {misfits} do not fit a {encoding} label image: remove them first")
            if len(ids) + adding.new > max_objects:
                raise ValueError(f"{len(ids) + adding.new} objects are tracked, more than max_objects {max_objects}: "
                                 "remove some first")
            self._bounds = new_bounds

    @contextmanager
    def _adding_objects(self, prompts: list[Prompt], config: S.NodeConfig):
        """Add checked prompts' objects within: only under the settings admitted last, none admitted meanwhile."""
        with self._lock:
            if bounds(config) != self._bounds:
                raise SettingsChanged(f"mode, mask_encoding or max_objects changed to {self._bounds} after this "
                                      "prompt was checked: it runs again with them")
            self._adding = Adding(frozenset(p.object_id for p in prompts if p.object_id != ASSIGN_NEW_ID),
                                  sum(1 for p in prompts if p.object_id == ASSIGN_NEW_ID))
        try:
            yield
        finally:
            self._publish_state()
            with self._lock:
                self._adding = None

    def _publish_state(self) -> None:
        """Swap the readers' copy in (the worker calls this after every change)."""
        labels = {i: o.label for i, o in self._tracker.objects.items()}
        labels.update({i: e.prompt.label for i, e in self._in_force.items()})
        detector = frozenset(i for i, e in self._in_force.items() if e.from_detector)
        with self._lock:
            self._labels, self._detector_ids = labels, detector

    # ----- the worker's -----
    def follow(self, config: S.NodeConfig) -> None:
        """Take run-time settings the tracker keeps (called on the worker, before each item)."""
        self._tracker.max_objects = config.tracking.max_objects
        self._tracker.batch_objects = config.tracking.batch_objects
        if config.text.prompt != self._text_param:  # the parameter changed: it replaces the text in force
            self._text_param = config.text.prompt
            self.set_text(phrases_of(config.text.prompt) if config.text.prompt else None, config)

    def process(self, seq: int, header, stamp_ns: int, rgb: np.ndarray, config: S.NodeConfig,
                on_object: Callable | None = None) -> Processed:
        """Encode once, track or segment, and commit the frame: all or nothing.

        The tracker and the ring advance together: everything that can fail comes first,
        track() is all or nothing by itself, and the commit cannot fail.
        """
        start = time.perf_counter()
        encoded = encode(self.model, rgb)
        kept = for_prompts(self.model, encoded)
        if config.tracking.tracks:
            result = self._tracker.track(rgb, encoded, on_object=on_object)
            objects, decode_ms, dropped = result.objects, result.track_ms, result.dropped_cond_frames
            index = self._tracker.frame_index
        else:  # the tracker never sees image mode's frames
            (objects, decode_ms), dropped = self._segment_in_force(encoded.image_hw, encoded, self._in_force), {}
            index = None
        frame = RecentFrame(seq, stamp_ns, header, rgb, kept, index)
        self._ring.commit(frame)  # arrival numbers only grow
        with self._lock:
            self._newest_stamp = stamp_ns
        return Processed(frame, objects, encoded.encode_ms, decode_ms, (time.perf_counter() - start) * 1e3, dropped)

    def find(self, key: int, config: S.NodeConfig) -> RecentFrame:
        return self._ring.find(key, round(config.tracking.prompt_max_age_s * 1e9))

    def apply(self, prompts: list[Prompt], key: int, config: S.NodeConfig,
              prompts_hw: tuple[int, int] | None = None) -> Change:
        """Add or correct objects, all or nothing.

        `prompts_hw`: the size of the image the prompts' pixels belong to, when it is not the
        frame's (a click projected with a camera info of another resolution).
        """
        prompts, phrases = text_of(prompts)
        if phrases is not None and not prompts:
            return self._text_alone(phrases, config)
        source = self.find(key, config)
        if prompts_hw is not None:
            prompts = [rescale(p, prompts_hw, source.image_hw) for p in prompts]
        if config.tracking.tracks:
            change = self._apply_tracked(prompts, source, config)
        else:
            change = self._apply_in_force(prompts, source, config)
        if phrases is not None:  # only once every other prompt was applied: all or nothing
            self.set_text(phrases, config)
            change = change._replace(ids=[*change.ids, ASSIGN_NEW_ID])
        return change

    def _text_alone(self, phrases: tuple[str, ...], config: S.NodeConfig) -> Change:
        """Put a text prompt in force and answer on the newest frame; it names no frame's pixels, so no stamp counts.

        The detector finds its objects from the newest frame on. Before the first frame (in
        track mode: the first tracked one, `mode` just switched) the prompt waits for it, as
        the parameter `text_prompt` does.
        """
        if not len(self._ring):
            raise FrameNotYet("no camera frame processed yet: a text prompt waits for the first")
        newest = self._newest_tracked() if config.tracking.tracks else self._ring.newest()
        self.set_text(phrases, config)  # after the last check: refused, it changes nothing
        if config.tracking.tracks:
            return Change([ASSIGN_NEW_ID], newest, self._tracker.current())
        return Change([ASSIGN_NEW_ID], newest, self._segment_in_force(newest.image_hw, newest.encoded,
                                                                      self._in_force)[0])

    def _newest_tracked(self) -> RecentFrame:
        """Return the newest frame, the tracker's current one; `mode` just switched to track, a prompt waits for one."""
        newest = self._ring.newest()
        if newest.tracker_index is None:
            raise FrameNotYet("the newest frame was processed in image mode: track mode takes prompts from "
                              "its next frame on")
        if newest.tracker_index != self._tracker.frame_index:
            raise FrameMismatch(f"the tracker is on frame {self._tracker.frame_index} but the newest kept "
                                f"frame is {newest.tracker_index}: prompt not applied")
        return newest

    def _check(self, prompts: list[Prompt], hw: tuple[int, int], tracked: set[int],
               config: S.NodeConfig) -> list[Prompt]:
        """Validate every prompt before any is applied: all or nothing."""
        checked = [validate(prompt, hw) for prompt in prompts]
        output = config.output
        for prompt in checked:
            if S.unlabelled([prompt.object_id], output.mask_encoding):
                raise PromptError(f"object id {prompt.object_id} does not fit the "
                                  f"{output.mask_encoding} label image (max {output.max_label})")
            if config.tracking.tracks:
                check_trackable(prompt)
        new = {p.object_id for p in checked if p.object_id != ASSIGN_NEW_ID and p.object_id not in tracked}
        new_count = len(new) + sum(1 for p in checked if p.object_id == ASSIGN_NEW_ID)
        if len(tracked) + new_count > config.tracking.max_objects:
            raise TrackerError(f"cannot add {new_count} object(s): {len(tracked)} tracked, max_objects "
                               f"{config.tracking.max_objects}")
        return checked

    def _apply_tracked(self, prompts: list[Prompt], source: RecentFrame, config: S.NodeConfig) -> Change:
        newest = self._newest_tracked()
        checked = self._check(prompts, source.image_hw, set(self._tracker.objects), config)
        if source is not newest:
            self._report(f"prompt for frame {stamp_text(source.stamp_ns)} applied to the newest frame "
                         f"{stamp_text(newest.stamp_ns)}: tracking only moves forward", None)
            checked = [rescale(p, source.image_hw, newest.image_hw) for p in checked]
        ids = []
        with self._adding_objects(checked, config), self._tracker.transaction():
            for prompt in checked:
                ids.append(self._tracker.add_prompt(prompt)[0])
        return Change(ids, newest, self._tracker.current())

    def _apply_in_force(self, prompts: list[Prompt], source: RecentFrame, config: S.NodeConfig,
                        detector: bool = False, base: dict[int, InForce] | None = None) -> Change:
        in_force = dict(self._in_force if base is None else base)
        checked = self._check(prompts, source.image_hw, set(in_force), config)
        ids = []
        for prompt in checked:
            object_id = prompt.object_id if prompt.object_id != ASSIGN_NEW_ID else first_free_id(in_force)
            in_force[object_id] = InForce(replace(prompt, object_id=object_id), source.image_hw, detector)
            ids.append(object_id)
        with self._adding_objects(checked, config):
            objects, _ = self._segment_in_force(source.image_hw, source.encoded, in_force)
            self._in_force = in_force  # only once SAM 2 took them all
        return Change(ids, source, objects)

    def apply_detections(self, detections: Detections, key: int, config: S.NodeConfig) -> Change | None:
        """Detector boxes: bad ones dropped one by one, the best-scoring kept up to max_objects.

        Track mode seeds objects only where no tracked mask already lies, and changes nothing
        when nothing was added. Image mode replaces the detector's earlier boxes (an empty
        array clears them) and keeps the user's prompts.
        """
        source = self.find(key, config)
        track = config.tracking.tracks
        target = self._newest_tracked() if track else source
        boxes = []
        for prompt in detections.prompts:
            try:
                boxes.append(rescale(validate(prompt, source.image_hw), source.image_hw, target.image_hw))
            except PromptError as error:
                self._report(f"detection dropped: {error}", "bad detection")
        if track:
            boxes = [box for box in boxes if not self._covered(box)]
            kept = set(self._tracker.objects)
        else:
            kept = {i for i, e in self._in_force.items() if not e.from_detector}
            if not boxes and len(kept) == len(self._in_force):
                return None  # no detector boxes before or now: nothing changes
        room = config.tracking.max_objects - len(kept)
        if len(boxes) > room:
            self._report(f"{len(boxes) - room} detection(s) over max_objects {config.tracking.max_objects} dropped, "
                         "the best-scoring kept", "bad detection")
            boxes = boxes[:max(room, 0)]
        if track:
            return self._apply_tracked(boxes, target, config) if boxes else None
        base = {i: e for i, e in self._in_force.items() if i in kept}
        return self._apply_in_force(boxes, target, config, detector=True, base=base)

    def _covered(self, prompt: Prompt) -> bool:
        """Whether a box lies mostly on an object already tracked on the newest frame."""
        x0, y0, x1, y1 = (max(int(round(v)), 0) for v in prompt.box)
        return any(obj.mask[y0:y1, x0:x1].size and obj.mask[y0:y1, x0:x1].mean() > 0.5
                   for obj in self._tracker.current())

    def _in_force_on(self, image_hw: tuple[int, int], entries) -> list[Prompt]:
        """Image mode: the prompts in force, moved to this frame's size; any outside it is skipped."""
        prompts = []
        for entry in entries:
            try:
                prompts.append(validate(rescale(entry.prompt, entry.image_hw, image_hw), image_hw))
            except PromptError as error:
                self._report(f"object {entry.prompt.object_id} skipped on this frame: {error}", error)
        return prompts

    def _segment_in_force(self, image_hw, encoded: EncodedFrame, entries: dict[int, InForce]) -> tuple[list, float]:
        prompts = self._in_force_on(image_hw, entries.values())
        if not prompts:
            return [], 0.0
        segmentation = self._segmenter.predict(prompts, encoded)
        return segmentation.objects, segmentation.decode_ms

    def segment_once(self, prompts: list[Prompt], key: int, rgb: np.ndarray | None, config: S.NodeConfig):
        """Segment now on a kept frame or a given image: a one-off answer that changes no object.

        Returns (objects, image_hw, frame or None, encode_ms, decode_ms).
        """
        numbered = assign_ids(prompts)
        if rgb is not None:
            segmentation = self._segmenter.segment(rgb, numbered)
            return segmentation.objects, rgb.shape[:2], None, segmentation.encode_ms, segmentation.decode_ms
        frame = self.find(key, config)
        segmentation = self._segmenter.predict(numbered, frame.encoded)
        return segmentation.objects, frame.image_hw, frame, 0.0, segmentation.decode_ms

    def everything(self, settings: EverythingSettings, key: int, rgb: np.ndarray | None, config: S.NodeConfig,
                   slice_s: Callable[[], float], limit: int):
        """Every mask SAM 2 finds, as a resumable pass: a generator that yields after each slice.

        `slice_s()` says how long the turn that starts computes (the worker's choice, turn by turn).

        Its value (StopIteration's) is (proposals, image_hw, frame or None, encode_ms, decode_ms).
        """
        frame = None
        if rgb is not None:
            encoded = encode(self.model, rgb)
            yield
        else:
            frame = self.find(key, config)
            encoded = frame.encoded
        chunk = self.model.per_call(settings.points_per_batch, SLICE_CALL_TOKENS)
        run = Everything(self.model, settings, decode_chunk=chunk).start(encoded, limit)
        while (proposals := run.step_for(slice_s())) is None:
            yield
        return proposals, encoded.image_hw, frame, encoded.encode_ms if rgb is not None else 0.0, run.ms

    def remove(self, object_id: int, config: S.NodeConfig) -> None:
        try:
            if config.tracking.tracks:
                self._tracker.remove(object_id)
            elif object_id not in self._in_force:
                raise TrackerError(f"no object with id {object_id} (ids: {sorted(self._in_force) or 'none'})")
            else:
                self._in_force = {i: e for i, e in self._in_force.items() if i != object_id}
        finally:
            self._publish_state()

    def reset(self) -> int:
        count = len(self._tracker.objects) + len(self._in_force)
        self._tracker.reset()
        self._in_force = {}
        self._discovery.forget()
        self._text.stop()  # a text prompt in force finds its objects again from the next frame
        self._text_boxes.clear()
        self._publish_state()
        return count

    # ----- discovery (track mode) -----
    def discovery_room(self, config: S.NodeConfig) -> int:
        """Return how many more objects discovery may add.

        At most discover_max_objects discovered objects, and one of max_objects always left free
        for a user's prompt.
        """
        objects = self._tracker.objects.values()
        discovered = sum(1 for o in objects if o.label == UNKNOWN)
        return max(min(config.discovery.max_objects - discovered,
                       config.tracking.max_objects - 1 - len(objects)), 0)

    def discover(self, frame: RecentFrame, config: S.NodeConfig) -> tuple[Change | None, float] | None:
        """After a frame, a step of discovery; when its pass ends, track what is new.

        Proposals are compared with the tracked masks at the newest frame's size, and become
        objects labelled "unknown" on the newest frame. Returns None while a pass runs (or none
        starts), else (the change or None, the pass's ms).
        """
        found = self._discovery.step(frame, config, self.discovery_room(config))
        if found is None:
            return None
        proposals, ms = found
        newest = self._newest_tracked()
        scaled = [replace(p, mask=resized(p.mask, newest.image_hw)) for p in proposals]
        taken = [obj.mask for obj in self._tracker.current() if obj.mask.any()]
        new = novel(scaled, taken, config.discovery.min_area, config.discovery.max_overlap,
                    self.discovery_room(config))
        if not new:
            return None, ms
        prompts = [Prompt(object_id=ASSIGN_NEW_ID, label=UNKNOWN, mask=p.mask) for p in new]
        try:
            return self._apply_tracked(prompts, newest, config), ms
        except SettingsChanged:  # the limits changed during the pass: the next pass sees what is new again
            return None, ms

    def forget_discovery(self) -> None:
        self._discovery.forget()

    # ----- text prompts -----
    def text_phrases(self) -> tuple[str, ...]:
        return self._text.phrases

    def set_text(self, phrases: tuple[str, ...] | None, config: S.NodeConfig) -> None:
        """Put a text prompt in force (None clears it); the objects of the one before stay or go (text_keep_objects)."""
        if not config.text.keep_objects:
            self._drop_text_objects(config)
        self._text_boxes.clear()
        if phrases:
            self._text.set(phrases)
        else:
            self._text.clear()

    def _drop_text_objects(self, config: S.NodeConfig) -> None:
        if config.tracking.tracks:
            for object_id in sorted(self._text_boxes.keys() & self._tracker.objects.keys()):
                self._tracker.remove(object_id)
        else:
            self._in_force = {i: e for i, e in self._in_force.items() if not e.from_detector}
        self._publish_state()

    def text_loading(self) -> bool:
        return self._text.loading()

    def text_wants_time(self, config: S.NodeConfig) -> bool:
        """Return True while the text detector has a pass in flight, or one due on the newest frame."""
        return self._text.wants_time(self._ring.newest() if len(self._ring) else None, config)

    def text_step(self, config: S.NodeConfig, slice_s: float) -> tuple[Change | None, list[Found], float] | None:
        """Compute the text detector's pass for about `slice_s`; when it ends, track what it found that is new.

        A pass that is due starts on the newest frame. Returns None while a pass runs (or none is due),
        else (the change or None, the boxes, the pass's ms).
        """
        done = self._text.step(self._ring.newest() if len(self._ring) else None, config, slice_s)
        if done is None:
            return None
        found, found_hw, ms = done
        try:
            return self._text_objects(found, found_hw, config), found, ms
        except SettingsChanged:  # mode or limits changed during the pass: the next pass finds them again
            return None, found, ms

    def forget_text_pass(self) -> None:
        self._text.stop()

    def close(self) -> None:
        """End the text detector's pass in flight (its thread waits for its next slice otherwise)."""
        self._text.stop()

    def _text_objects(self, found: list[Found], found_hw: tuple[int, int], config: S.NodeConfig) -> Change | None:
        """Boxes (best first) on no tracked object become objects labelled with their phrase, up to the limits.

        A box on a tracked object (on its mask's box, or on the box the detector last gave it) is
        that object seen again: it keeps its id, and its detector box is updated.
        """
        track, newest = config.tracking.tracks, self._ring.newest()
        if track and newest.tracker_index is None:  # `mode` just became track: no frame tracked yet to add to
            return None  # the next pass, text_period_s on, finds them again on a tracked frame
        target = self._newest_tracked() if track else newest
        boxes = []
        for f in found:
            try:
                boxes.append(validate(rescale(Prompt(label=f.phrase, box=f.box), found_hw, target.image_hw),
                                      target.image_hw))
            except PromptError as error:
                self._report(f"text detector's box dropped: {error}", "bad detection")
        if track:
            self._text_boxes = {i: b for i, b in self._text_boxes.items() if i in self._tracker.objects}
            taken = [(obj.object_id, mask_box(obj.mask)) for obj in self._tracker.current() if obj.mask.any()]
            taken += list(self._text_boxes.items())
            room = min(config.text.max_objects - len(self._text_boxes),
                       config.tracking.max_objects - len(self._tracker.objects))
        else:
            taken, room = [], min(config.text.max_objects, config.tracking.max_objects - sum(
                1 for e in self._in_force.values() if not e.from_detector))
        new = []
        for box in boxes:
            iou, seen = max(((box_iou(box.box, other), i) for i, other in taken), default=(0.0, None),
                            key=lambda pair: pair[0])
            if iou >= TEXT_MATCH_IOU:
                if seen in self._text_boxes:
                    self._text_boxes[seen] = box.box
            elif len(new) < room:
                new.append(box)
                taken.append((None, box.box))
        if track:
            if not new:
                return None
            change = self._apply_tracked(new, target, config)
            self._text_boxes.update(zip(change.ids, (box.box for box in new)))
            return change
        base = {i: e for i, e in self._in_force.items() if not e.from_detector}
        return self._apply_in_force(new, target, config, detector=True, base=base)
