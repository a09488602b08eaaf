"""EdgeTAM equals EdgeTAM's own predictors on the same seeded random weights, every pixel.

The reference (`edgetam-dimos` 1.0.1, installed by `make` under .venv/reference/edgetam) has
a `sam2` module of its own, so it runs in a subprocess (edgetam_reference.py).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from test_tracker import run_ours

from conftest import SMALL, photo
from sam2_ros.core.encoding import to_model_input
from sam2_ros.core.model import CheckpointError, ModelSpec, build_network, load_model, write_random_checkpoint
from sam2_ros.core.prompts import Prompt
from sam2_ros.core.segmenter import Segmenter
from sam2_ros.core.tracker import StreamingTracker
from sam2_ros.tools.scenes import object_box, pan_clip

HERE = Path(__file__).resolve().parent
REFERENCE = HERE.parents[1] / ".venv" / "reference" / "edgetam"
FRAMES = 30
OBJECT_PRESENT = 4.0  # logit of the object-presence head's last bias


@pytest.fixture(scope="module")
def edgetam_checkpoint(tmp_path_factory) -> str:
    """Seeded random weights, but for one bias: objects are predicted present, so the clip's masks
    are the decoder's masks and not SAM 2's fill for an absent object.
    """
    path = write_random_checkpoint(tmp_path_factory.mktemp("edgetam") / "edgetam.pt", name="edgetam", seed=0)
    content = torch.load(path, weights_only=True)
    content["model"]["sam_mask_decoder.pred_obj_score_head.layers.2.bias"].fill_(OBJECT_PRESENT)
    torch.save(content, path)
    return str(path)


@pytest.fixture(scope="module")
def edgetam(edgetam_checkpoint):
    return load_model(ModelSpec(name="edgetam", checkpoint=edgetam_checkpoint, device="cpu", image_size=SMALL))


def clip_script(truths) -> dict:
    """Object 1 from a box on the first frame, object 2 from a click on frame 10, object 1 corrected on 15."""
    h, w = truths[0].shape
    return {0: [("prompt", Prompt(object_id=1, box=object_box(truths[0])))],
            10: [("prompt", Prompt(object_id=2, points=np.array([[w * 0.8, h * 0.25]]), point_labels=np.array([1])))],
            15: [("prompt", Prompt(object_id=1, points=np.array([[*object_box(truths[15])[:2] + 40]]),
                                   point_labels=np.array([1])))]}


def image_prompts(image) -> list[tuple[Prompt, dict]]:
    """Ours and the reference predictor's arguments for: a click, a box, clicks of both kinds with a box."""
    h, w = image.shape[:2]
    click = [[w * 0.45, h * 0.55]]
    box = [w * 0.2, h * 0.15, w * 0.7, h * 0.8]
    mixed, labels = [[w * 0.5, h * 0.5], [w * 0.25, h * 0.3]], [1, 0]
    return [
        (Prompt(object_id=1, points=np.array(click), point_labels=np.array([1])),
         {"point_coords": click, "point_labels": [1], "multimask_output": True}),
        (Prompt(object_id=1, box=np.array(box, np.float32)), {"box": box, "multimask_output": False}),
        (Prompt(object_id=1, points=np.array(mixed), point_labels=np.array(labels), box=np.array(box, np.float32)),
         {"point_coords": mixed, "point_labels": labels, "box": box, "multimask_output": False}),
    ]


@pytest.fixture(scope="module")
def reference(edgetam_checkpoint, tmp_path_factory) -> dict:
    if not (REFERENCE / "sam2" / "configs" / "edgetam.yaml").is_file():
        pytest.fail(f"EdgeTAM's reference is not installed in {REFERENCE}: run `make setup`")
    images, truths = pan_clip(FRAMES)
    objects = {}  # object id -> its prompts by frame
    for t, actions in clip_script(truths).items():
        for _, prompt in actions:
            has_points = prompt.points is not None and len(prompt.points) > 0
            objects.setdefault(prompt.object_id, {})[t] = {
                "points": prompt.points.tolist() if has_points else None,
                "labels": prompt.point_labels.tolist() if has_points else None,
                "box": None if prompt.box is None else prompt.box.tolist()}
    objects = [{"id": object_id, "prompts": prompts} for object_id, prompts in objects.items()]
    job = {"checkpoint": edgetam_checkpoint, "image_size": SMALL, "objects": objects,
           "image_prompts": [given for _, given in image_prompts(photo("astronaut"))]}
    folder = tmp_path_factory.mktemp("edgetam_reference")
    source, target = folder / "in.npz", folder / "out.npz"
    inputs = torch.cat([to_model_input(image, SMALL, torch.device("cpu")) for image in images]).numpy()
    np.savez(source, job=json.dumps(job), photo=photo("astronaut"), frames=np.stack(images), inputs=inputs)
    env = {**os.environ, "PYTHONPATH": str(REFERENCE)}
    done = subprocess.run([sys.executable, str(HERE / "edgetam_reference.py"), str(source), str(target)],
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(np.load(target))


def test_every_published_parameter_name_and_shape_loads_into_edgetams_own_network(edgetam_checkpoint, reference):
    """The reference loads our saved weights strictly (it raises on a missing or unexpected key)."""
    assert reference, "the reference built EdgeTAM from the checkpoint and ran"
    state = torch.load(edgetam_checkpoint, weights_only=True)["model"]
    assert "spatial_perceiver.latents_2d" in state and "image_encoder.trunk.body.stem.conv1.c.weight" in state


@pytest.mark.parametrize("k, kind", [(0, "click"), (1, "box"), (2, "clicks of both kinds and a box")])
def test_single_images_equal_edgetams_image_predictor(edgetam, reference, k, kind):
    image = photo("astronaut")
    prompt, _ = image_prompts(image)[k]
    ours = Segmenter(edgetam).segment(image, [prompt]).objects[0]
    diff = np.count_nonzero(ours.mask != reference[f"image_mask_{k}"].astype(bool))
    assert diff == 0, f"{kind}: {diff} pixels differ from EdgeTAM's mask"
    assert ours.score == pytest.approx(float(reference[f"image_score_{k}"]), abs=1e-5)
    np.testing.assert_allclose(ours.logits[0], reference[f"image_logits_{k}"], atol=1e-4)


@pytest.mark.parametrize("batched", [False, True], ids=["one object per step", "objects batched"])
def test_a_30_frame_clip_with_an_object_added_late_and_a_correction_equals_edgetams_video_predictor(
        edgetam, reference, batched):
    images, truths = pan_clip(FRAMES)
    ours = run_ours(edgetam, images, clip_script(truths), batch_objects=batched)
    for object_id, first in ((1, 0), (2, 10)):
        expected = reference[f"video_masks_{object_id}"]
        assert len(expected) == FRAMES - first and 0 < expected.mean() < 1
        for t in range(first, FRAMES):
            diff = np.count_nonzero(ours[t][object_id] != expected[t - first])
            assert diff == 0, f"object {object_id}, frame {t}: {diff} pixels differ from EdgeTAM's"


def test_edgetam_memory_is_512_tokens_a_frame_at_any_input_size(edgetam):
    images, truths = pan_clip(2)
    tracker = StreamingTracker(edgetam)
    tracker.track(images[0])
    tracker.add_prompt(Prompt(object_id=1, box=object_box(truths[0])))
    tracker.track(images[1])
    memory = [out["maskmem_features"] for out in tracker.objects[1].non_cond.values()]
    memory += [out["maskmem_features"] for out in tracker.objects[1].cond.values()]
    assert memory and all(m.shape == (1, 64, 1, 512) for m in memory if m is not None)


def test_a_checkpoint_of_another_family_is_refused_naming_the_model_to_set(edgetam_checkpoint, checkpoint):
    with pytest.raises(CheckpointError, match="looks like a 'edgetam' checkpoint: set `model: edgetam`"):
        load_model(ModelSpec(name="sam2.1_hiera_tiny", checkpoint=edgetam_checkpoint, device="cpu", image_size=SMALL))
    with pytest.raises(CheckpointError, match="looks like a 'sam2.1_hiera_tiny' checkpoint"):
        load_model(ModelSpec(name="edgetam", checkpoint=checkpoint, device="cpu", image_size=SMALL))


def test_edgetam_builds_without_downloading_anything(monkeypatch):
    import timm
    real = timm.create_model
    asked = []
    monkeypatch.setattr(timm, "create_model", lambda *a, **k: asked.append(k.get("pretrained")) or real(*a, **k))
    build_network(ModelSpec(name="edgetam", image_size=SMALL))
    assert asked == [False]
