"""EdgeTAM equals EdgeTAM's own predictors on the same seeded random weights, every pixel.

The reference (`edgetam-dimos` 1.0.1, installed by `make` under .venv/reference/edgetam) has
a `sam2` module of its own, so it runs in a subprocess (edgetam_reference.py). Both sides run
the network rearranged for inference as the node does (RepViT fused, channels-last, the
high-resolution neck convolutions merged into the decoder's); that is checked against the
network as loaded.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import SMALL, photo
from families import FRAMES, clip_script, image_prompts, reference_kwargs, write_present_checkpoint
from sam2_ros.core.encoding import to_model_input
from sam2_ros.core.model import CheckpointError, ModelSpec, build_network, load_model
from sam2_ros.core.prompts import Prompt
from sam2_ros.core.segmenter import Segmenter
from sam2_ros.core.tracker import StreamingTracker
from sam2_ros.tools.scenes import object_box, pan_clip
from test_tracker import run_ours

HERE = Path(__file__).resolve().parent
REFERENCE = HERE.parents[1] / ".venv" / "reference" / "edgetam"


@pytest.fixture(scope="module")
def edgetam_checkpoint(tmp_path_factory) -> str:
    return str(write_present_checkpoint(tmp_path_factory.mktemp("edgetam") / "edgetam.pt", "edgetam"))


@pytest.fixture(scope="module")
def edgetam(edgetam_checkpoint):
    return load_model(ModelSpec(name="edgetam", checkpoint=edgetam_checkpoint, device="cpu", image_size=SMALL))


@pytest.fixture(scope="module")
def reference(edgetam_checkpoint, tmp_path_factory) -> dict:
    if not (REFERENCE / "sam2" / "configs" / "edgetam.yaml").is_file():
        pytest.fail(f"EdgeTAM's reference is not installed in {REFERENCE}: run `make setup`")
    images, truths = pan_clip(FRAMES)
    objects = {}  # object id -> its prompts by frame
    for t, actions in clip_script(truths).items():
        for _, prompt in actions:
            objects.setdefault(prompt.object_id, {})[t] = reference_kwargs(prompt)
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


def test_the_network_rearranged_for_inference_equals_the_one_as_loaded_to_float_rounding(edgetam_checkpoint):
    """RepViT fused (timm's `fuse`), channels-last, high-resolution convolutions merged; oracle: the loaded network."""
    loaded = build_network(ModelSpec(name="edgetam", image_size=SMALL))
    loaded.load_state_dict(torch.load(edgetam_checkpoint, weights_only=True)["model"])
    deployed = load_model(ModelSpec(name="edgetam", checkpoint=edgetam_checkpoint, device="cpu", image_size=SMALL)).sam
    norms = [type(m).__name__ for m in deployed.image_encoder.trunk.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms == [] and any(isinstance(m, torch.nn.BatchNorm2d) for m in loaded.modules())
    x = to_model_input(photo("astronaut"), SMALL, torch.device("cpu"))
    with torch.inference_mode():
        want, got = loaded.eval().forward_image(x), deployed.forward_image(x)
    assert [f.shape[1] for f in got["backbone_fpn"]] == [32, 64, 256], "SAM 2's high-resolution projections"
    for level, (a, b) in enumerate(zip(want["backbone_fpn"], got["backbone_fpn"], strict=True)):
        assert a.abs().max() > 0.05, "features worth comparing"
        np.testing.assert_allclose(b, a, atol=1e-5, rtol=0, err_msg=f"level {level}")
    np.testing.assert_array_equal(got["vision_pos_enc"][-1], want["vision_pos_enc"][-1])


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


def test_segment_everything_on_edgetam_equals_metas_generator_on_it(edgetam):
    from test_everything import LOOSE, assert_same, meta_generate

    from sam2_ros.core.encoding import encode
    from sam2_ros.core.everything import Everything
    image = photo("coffee")
    ours, _ = Everything(edgetam, LOOSE).propose(encode(edgetam, image))
    assert_same(ours, meta_generate(edgetam, image, LOOSE))


def test_the_node_tracks_with_edgetam_objects_added_late_corrected_and_removed_as_the_core_does(
        edgetam_checkpoint, edgetam):
    from geometry_msgs.msg import Point32

    from rosharness import NODE, Running, add, box_prompt, full_mask, header
    from sam2_ros_interfaces.msg import Prompt as PromptMsg
    from sam2_ros_interfaces.srv import RemoveObject

    images, truths = pan_clip(6)
    core = StreamingTracker(edgetam)
    running = Running(edgetam_checkpoint, model="edgetam")
    try:
        def frame(t):
            running.peer.publish_rgb(images[t], header(t + 1))
            return running.peer.result_for(header(t + 1)), core.track(images[t])

        frame(0)
        frame(1)  # the first object comes on the second frame
        assert add(running, box_prompt(object_box(truths[1]), header(2))).success
        core.add_prompt(Prompt(object_id=1, box=object_box(truths[1])))
        frame(2)
        click = [float(v) for v in object_box(truths[2])[:2] + 30]
        correction = PromptMsg(header=header(3), object_id=1, points=[Point32(x=click[0], y=click[1])],
                               point_labels=[1])
        assert add(running, correction, box_prompt([10, 10, 90, 90], header(3))).success
        core.add_prompt(Prompt(object_id=1, points=np.array([click]), point_labels=np.array([1])))
        core.add_prompt(Prompt(object_id=2, box=np.array([10, 10, 90, 90], np.float32)))
        for t in (3, 4):
            published, expected = frame(t)
            assert [o.object_id for o in published.objects] == [o.object_id for o in expected.objects] == [1, 2]
            for obj, want in zip(published.objects, expected.objects):
                np.testing.assert_array_equal(full_mask(obj, truths[t].shape), want.mask)
        assert running.peer.call(RemoveObject, f"{NODE}/remove_object", RemoveObject.Request(object_id=2)).success
        core.remove(2)
        published, expected = frame(5)
        assert [o.object_id for o in published.objects] == [1]
        np.testing.assert_array_equal(full_mask(published.objects[0], truths[5].shape), expected.objects[0].mask)
    finally:
        running.close()


def test_padded_memory_attention_equals_the_unpadded_on_edgetams_latent_layout(edgetam):
    """Perceiver latents per frame (global first, then a 2D grid): padded whole frames leave real keys their weight."""
    from test_compiled_step import assert_padding_changes_nothing
    attention = edgetam.sam.memory_attention
    assert_padding_changes_nothing(attention, attention.layers[0].cross_attn_image.frame_tokens, 256,
                                   ((1, 4), (7, 64), (9, 92)))
