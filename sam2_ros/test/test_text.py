"""Text prompts, core: phrases checked, detectors of two families loaded from a folder, boxes as `transformers`
gives them, a pass sliced between frames, and the session tracking what a pass finds that is new.

The detectors are the real `transformers` architectures, small, with seeded random weights
(detectors.py); expected boxes come from `transformers` itself, run beside the code under test.
"""
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from detectors import save_grounding_dino, save_owlv2, save_sam3
from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

from conftest import SMALL, photo
from sam2_ros.core import settings as S
from sam2_ros.core import text
from sam2_ros.core.model import ModelSpec, build_network
from sam2_ros.core.prompts import ASSIGN_NEW_ID, Prompt, PromptError
from sam2_ros.core.session import TrackingSession
from sam2_ros.core.text import DetectorSpec, TextError, detector_folder, load_detector, phrases_of

PHRASES = ("cup", "red ball")
# SAM 3's detector came with transformers 5; Humble's Python 3.10 gets transformers 4, without it
needs_sam3 = pytest.mark.skipif(not hasattr(transformers, "Sam3Model"), reason="this transformers has no SAM 3")


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("detectors")
    folders = {"grounding-dino": save_grounding_dino(root / "gd"), "owlv2": save_owlv2(root / "owl")}
    if not needs_sam3.args[0]:
        folders["sam3"] = save_sam3(root / "sam3")
    return folders


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return photo("coffee")[:, :, :3].copy()


def reference(folder: Path, image: np.ndarray, box_threshold: float, text_threshold: float):
    """`transformers`' own detection: its processor, its model, its post-processing."""
    if (folder / "config.json").read_text().count('"model_type": "sam3"'):
        return sam3_reference(folder, image, box_threshold)
    model = AutoModelForZeroShotObjectDetection.from_pretrained(folder).eval()
    processor = AutoProcessor.from_pretrained(folder)
    with torch.inference_mode():
        if model.config.model_type == "owlv2":
            inputs = processor(text=[list(PHRASES)], images=image, return_tensors="pt")
            out = processor.post_process_grounded_object_detection(
                model(**inputs), threshold=box_threshold, target_sizes=[image.shape[:2]],
                text_labels=[list(PHRASES)])[0]
            return out["boxes"].numpy(), out["scores"].numpy(), list(out["text_labels"])
        inputs = processor(images=image, text="cup. red ball.", return_tensors="pt")
        outputs = model(**inputs)
        out = processor.post_process_grounded_object_detection(
            outputs, inputs.input_ids, threshold=box_threshold, text_threshold=text_threshold,
            target_sizes=[image.shape[:2]])[0]
        # a plain loop: the phrase of a box is the phrase owning its best-scoring token
        probs = outputs.logits[0].sigmoid()
        tokens = processor.tokenizer.convert_ids_to_tokens(inputs.input_ids[0])
        owner = {i: ("cup" if t == "cup" else "red ball") for i, t in enumerate(tokens) if t in ("cup", "red", "ball")}
        phrases = []
        for query in range(probs.shape[0]):
            if probs[query].max() > box_threshold:
                best = max(owner, key=lambda i: probs[query, i])
                phrases.append(owner[best])
        return out["boxes"].numpy(), out["scores"].numpy(), phrases


def sam3_reference(folder: Path, image: np.ndarray, box_threshold: float):
    """SAM 3 as its model card runs it: one phrase at a time."""
    from transformers import Sam3Model, Sam3Processor

    model, processor = Sam3Model.from_pretrained(folder).eval(), Sam3Processor.from_pretrained(folder)
    boxes, scores, phrases = [], [], []
    with torch.inference_mode():
        for phrase in PHRASES:
            inputs = processor(images=image, text=phrase, return_tensors="pt")
            out = processor.post_process_object_detection(model(**inputs), threshold=box_threshold,
                                                          target_sizes=inputs["original_sizes"].tolist())[0]
            boxes += out["boxes"].tolist()
            scores += out["scores"].tolist()
            phrases += [phrase] * len(out["scores"])
    return np.array(boxes, np.float32), np.array(scores, np.float32), phrases


# ----- phrases -----
def test_phrases_are_split_on_dots_tidied_and_kept_once():
    assert phrases_of("cup . red  ball") == ("cup", "red ball")
    assert phrases_of("  cup .. cup . ") == ("cup",)
    assert phrases_of("red ball") == ("red ball",)


@pytest.mark.parametrize("text, reason", [
    ("", "empty"), (" . . ", "empty"), ("x" * 10_000, "10000 characters is over the limit of 1000"),
    ("cup \ufffd", "not valid UTF-8"), ("cup\x00", "control characters"),
    (" . ".join(f"thing{i}" for i in range(17)), "17 phrases, over the limit of 16")])
def test_what_is_no_text_prompt_is_refused_saying_why(text, reason):
    with pytest.raises(TextError, match=reason):
        phrases_of(text)


# ----- detectors -----
@pytest.mark.parametrize("family", ["grounding-dino", "owlv2", pytest.param("sam3", marks=needs_sam3)])
def test_boxes_scores_and_phrases_are_the_detectors_own(folders, image, family):
    detector = load_detector(DetectorSpec(str(folders[family]), "cpu"))
    box_threshold = {"grounding-dino": 0.3, "owlv2": 0.0, "sam3": 0.0}[family]  # random weights score low
    boxes, scores, phrases = reference(folders[family], image, box_threshold, 0.25)
    order = np.argsort(-scores, kind="stable")
    with torch.inference_mode():
        found = detector.detect(image, PHRASES, box_threshold, 0.25)
    assert len(found) == len(boxes) > 0
    np.testing.assert_allclose([f.box for f in found], boxes[order], atol=1e-3)
    np.testing.assert_allclose([f.score for f in found], scores[order], atol=1e-5)
    assert [f.phrase for f in found] == [phrases[i] for i in order]


@pytest.mark.parametrize("family, size", [("grounding-dino", 160), ("owlv2", 96)])
def test_another_input_size_is_the_processors_resize(folders, image, family, size):
    detector = load_detector(DetectorSpec(str(folders[family]), "cpu", size))
    inputs = detector.family.prepare(detector.processor, image, PHRASES, detector.image_size)
    assert detector.input_size == size and min(inputs["pixel_values"].shape[-2:]) == size
    with torch.inference_mode():
        assert detector.detect(image, PHRASES, 0.0, 0.0)


@needs_sam3
def test_sam3_refuses_another_input_size(folders):
    with pytest.raises(TextError, match="SAM 3 runs at its own input size only: set text_image_size to 0"):
        load_detector(DetectorSpec(str(folders["sam3"]), "cpu", 56))


def test_a_sam2_network_built_while_a_detector_loads_gets_real_weights(folders, monkeypatch):
    """Transformers 4 (Humble's) builds a model with nn.Module.register_parameter patched process-wide to make
    meta tensors (its integrations.accelerate.init_empty_weights); a node configuring SAM 2 on another thread
    meanwhile must not get them. The detector below loads as transformers 4 does: that patch, then the model.
    """
    family, folder = detector_folder(str(folders["grounding-dino"]))
    patched = threading.Event()

    def load_as_transformers_4(path):
        real = torch.nn.Module.register_parameter

        def on_meta(module, name, parameter):
            real(module, name, None if parameter is None else torch.nn.Parameter(parameter.to("meta")))
        torch.nn.Module.register_parameter = on_meta
        try:
            patched.set()
            time.sleep(0.5)
        finally:
            torch.nn.Module.register_parameter = real
        return family.load(path)
    monkeypatch.setattr(text, "detector_folder", lambda name: (replace(family, load=load_as_transformers_4), folder))
    loader = threading.Thread(target=load_detector, args=(DetectorSpec(str(folder), "cpu"),))
    loader.start()
    assert patched.wait(30)
    network = build_network(ModelSpec(image_size=SMALL))
    loader.join()
    assert not any(p.is_meta for p in network.parameters())


def test_a_named_detector_is_a_family_of_the_registry_and_a_saved_one_is_known_by_its_model_type(folders):
    assert detector_folder(str(folders["owlv2"]))[0].title == "OWLv2"
    with pytest.raises(ValueError, match="unknown text detector 'yolo'.*grounding_dino_tiny"):
        detector_folder("yolo")


def test_a_folder_without_a_detector_is_refused(tmp_path):
    with pytest.raises(TextError, match="holds no transformers detector"):
        detector_folder(str(tmp_path))


# ----- the session: what a pass finds becomes objects -----
def config(**values) -> S.NodeConfig:
    return S.NodeConfig().changed(**{"text_detector": "", "text_box_threshold": 0.3, **values})


def session_on(small_model, folder: Path, **values):
    settings = config(text_detector=str(folder), **values)
    session = TrackingSession(small_model, settings, lambda *_: None)
    return session, settings


def finish_pass(session, settings):
    for _ in range(10_000):
        done = session.text_step(settings, settings.text.slice_ms / 1e3)
        if done is not None:
            return done
        time.sleep(0.001)  # the detector loads on its own thread the first time
    raise AssertionError("the text pass never ended")


def accepted(boxes, scores, phrases, taken, limit):
    """The expected objects, by a plain loop: best first, a box on nothing taken, up to the limit."""
    def iou(a, b):
        w = max(min(a[2], b[2]) - max(a[0], b[0]), 0)
        h = max(min(a[3], b[3]) - max(a[1], b[1]), 0)
        return w * h / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h)
    kept = []
    for i in np.argsort(-scores, kind="stable"):
        if len(kept) < limit and all(iou(boxes[i], t) < 0.5 for t in taken):
            kept.append(phrases[i])
            taken = [*taken, boxes[i]]
    return kept


def test_a_pass_tracks_each_new_box_labelled_with_its_phrase_and_nothing_on_a_tracked_object(
        small_model, folders, image):
    session, settings = session_on(small_model, folders["grounding-dino"], text_max_objects=3)
    session.process(1, None, 1, image, settings)
    boxes, scores, phrases = reference(folders["grounding-dino"], image, 0.3, 0.25)
    best = boxes[np.argmax(scores)]
    user = np.zeros(image.shape[:2], bool)
    x0, y0, x1, y1 = np.round(best).astype(int)
    user[y0:y1, x0:x1] = True  # the user's object lies where the detector's best box does
    session.apply([Prompt(label="mine", mask=user)], 1, settings)
    session.apply([Prompt(text="cup . red ball")], 1, settings)
    change, found, _ = finish_pass(session, settings)

    expected = accepted(boxes, scores, phrases, [best], 3)
    labels = session.object_labels()
    assert labels[1] == "mine"
    assert [labels[i] for i in change.ids] == expected and len(expected) == 3
    assert len(found) == len(boxes)

    session.process(2, None, 2, image, settings)  # the next pass waits for a frame it has not seen
    again = finish_pass(session, config(text_detector=str(folders["grounding-dino"]), text_period_s=0.0001,
                                               text_max_objects=3))
    assert again[0] is None, "the same boxes again: every one is on a tracked object"
    assert session.object_labels() == labels


def test_text_max_objects_bounds_what_the_text_prompt_adds_and_keep_objects_false_drops_them_on_clear(
        small_model, folders, image):
    session, settings = session_on(small_model, folders["grounding-dino"], text_max_objects=2,
                                   text_keep_objects=False)
    session.process(1, None, 1, image, settings)
    session.apply([Prompt(label="mine", box=np.array([10, 10, 60, 60], np.float32))], 1, settings)
    session.apply([Prompt(text="cup")], 1, settings)
    change, _, _ = finish_pass(session, settings)
    assert len(change.ids) == 2 and set(session.object_labels()) == {1, *change.ids}
    session.set_text(None, settings)
    assert session.object_labels() == {1: "mine"} and session.text_phrases() == ()


@pytest.mark.parametrize("text", ["", " . ", "y" * 10_000, "cup\ufffd"])
def test_bad_text_in_a_request_is_refused_and_nothing_tracked_is_lost(small_model, folders, image, text):
    session, settings = session_on(small_model, folders["grounding-dino"])
    session.process(1, None, 1, image, settings)
    session.apply([Prompt(label="mine", box=np.array([10, 10, 60, 60], np.float32))], 1, settings)
    prompts = [Prompt(box=np.array([100, 100, 160, 160], np.float32)), Prompt(text=text or " ")]
    with pytest.raises(PromptError):
        session.apply(prompts, 1, settings)
    assert session.object_labels() == {1: "mine"} and session.text_phrases() == ()


def test_a_text_prompt_carries_nothing_else_and_comes_one_to_a_request(small_model, folders, image):
    session, settings = session_on(small_model, folders["grounding-dino"])
    session.process(1, None, 1, image, settings)
    with pytest.raises(PromptError, match="carries no points, box or mask"):
        session.apply([Prompt(text="cup", box=np.array([1, 1, 9, 9], np.float32))], 1, settings)
    with pytest.raises(PromptError, match="2 text prompts in one request"):
        session.apply([Prompt(text="cup"), Prompt(text="ball")], 1, settings)
    change = session.apply([Prompt(text="cup")], 1, settings)
    assert change.ids == [ASSIGN_NEW_ID] and session.text_phrases() == ("cup",)


def test_the_text_prompt_parameter_puts_phrases_in_force_and_empty_clears_them(small_model, folders):
    session, settings = session_on(small_model, folders["owlv2"])
    session.follow(settings.changed(text_prompt="red ball . cup"))
    assert session.text_phrases() == ("red ball", "cup")
    session.follow(settings.changed(text_prompt=""))
    assert session.text_phrases() == ()


def test_a_detector_that_cannot_load_is_reported_once_and_the_text_prompt_dropped(small_model, image, tmp_path):
    session, settings = session_on(small_model, tmp_path)  # an empty folder
    session.process(1, None, 1, image, settings)
    session.apply([Prompt(text="cup")], 1, settings)
    with pytest.raises(TextError, match="holds no transformers detector"):
        finish_pass(session, settings)
    assert session.text_phrases() == () and session.text_step(settings, 0.05) is None
