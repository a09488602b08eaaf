"""Record EfficientTAM's own outputs, the reference test_efficienttam.py compares ours with.

EfficientTAM's code (github.com/yformer/EfficientTAM, package `efficient_track_anything`) is not
on PyPI (a package of a similar name is an unrelated copy), so CI cannot run it: this script
runs it once, outside the project, and stores what it gives in sam2_ros/test/data/. To rerun
(after `make build`, in a shell where `source scripts/env.sh` was typed):

    git clone https://github.com/yformer/EfficientTAM ~/src/EfficientTAM
    python3 scripts/record_efficienttam.py ~/src/EfficientTAM

It records, for every published variant, the parameter names and shapes of EfficientTAM's own
network; and for efficienttam_s, _ti, _ti_1 and _ti_2 at input size 256, on our seeded random
weights loaded strictly into EfficientTAM's network: its image predictor on three prompts and
its video predictor on a 30-frame clip (an object added on frame 10, a correction on 15).
"""
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "sam2_ros" / "test" / "data" / "efficienttam_reference.npz"
RECORDED = ("efficienttam_s", "efficienttam_ti", "efficienttam_ti_1", "efficienttam_ti_2")
SIZE = 256


def reference_network(checkout: Path, name: str, image_size: int | None, video: bool):
    """EfficientTAM's network from its own config file, without Hydra's global search path."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    config = OmegaConf.load(checkout / "efficient_track_anything" / "configs" / "efficienttam" / f"{name}.yaml")
    model = config.model
    model.compile_image_encoder = False
    if image_size is not None:
        side = image_size // 16
        model.image_size = image_size
        model.memory_attention.layer.self_attention.feat_sizes = [side, side]
        model.memory_attention.layer.cross_attention.feat_sizes = [side, side]
    # what our ModelSpec turns on (Meta's video predictor builder does the same); holes are not
    # filled, as Meta's predictor skips it on an install without its CUDA extension
    model.sam_mask_decoder_extra_args = {"dynamic_multimask_via_stability": True,
                                         "dynamic_multimask_stability_delta": 0.05,
                                         "dynamic_multimask_stability_thresh": 0.98}
    model.binarize_mask_from_pts_for_mem_enc = True
    if video:
        model._target_ = "efficient_track_anything.efficienttam_video_predictor.EfficientTAMVideoPredictor"
        model.fill_hole_area = 0
        model.add_all_frames_to_correct_as_cond = True  # a correction makes a conditioning frame, as ours
    return instantiate(model, _recursive_=True).eval()


def main(checkout: Path) -> None:
    sys.path.insert(0, str(checkout))
    sys.path.insert(0, str(REPO / "sam2_ros" / "test"))
    from skimage.data import astronaut

    from families import FRAMES, clip_script, image_prompts, reference_kwargs, weights_digest, write_present_checkpoint
    from sam2_ros.core.encoding import to_model_input
    from sam2_ros.core.networks.efficienttam import VARIANTS
    from sam2_ros.tools.scenes import pan_clip

    layouts = {name: {k: list(v.shape) for k, v in reference_network(checkout, name, None, False).state_dict().items()}
               for name in VARIANTS}
    out = {"layouts": json.dumps(layouts)}
    images, truths = pan_clip(FRAMES)
    inputs = torch.cat([to_model_input(image, SIZE, torch.device("cpu")) for image in images])
    script = {t: [(prompt.object_id, reference_kwargs(prompt)) for _, prompt in actions]
              for t, actions in clip_script(truths).items()}
    photo = astronaut()
    for name in RECORDED:
        with tempfile.TemporaryDirectory() as scratch:
            path = write_present_checkpoint(Path(scratch) / f"{name}.pt", name)
            state = torch.load(path, weights_only=True)["model"]
        out[f"{name}_weights"] = weights_digest(state)
        with torch.inference_mode():
            out.update({f"{name}_{k}": v for k, v in record_images(checkout, name, state, photo,
                                                                   image_prompts(photo)).items()})
            out.update({f"{name}_{k}": v for k, v in record_clip(checkout, name, state, images, inputs,
                                                                 script).items()})
        print(f"recorded {name}", flush=True)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, **out)
    print(f"wrote {OUT}")


def record_images(checkout: Path, name: str, state: dict, photo: np.ndarray, prompts: list) -> dict:
    from efficient_track_anything.efficienttam_image_predictor import EfficientTAMImagePredictor

    network = reference_network(checkout, name, SIZE, False)
    network.load_state_dict(state, strict=True)
    predictor = EfficientTAMImagePredictor(network)
    side = SIZE // 16
    predictor._bb_feat_sizes = [(4 * side, 4 * side), (2 * side, 2 * side), (side, side)]
    predictor.set_image(photo)
    out = {}
    for k, (_, given) in enumerate(prompts):
        masks, scores, logits = predictor.predict(**{key: np.array(value) if isinstance(value, list) else value
                                                     for key, value in given.items()})
        best = int(np.argmax(scores))
        out[f"image_mask_{k}"] = np.packbits(masks[best].astype(bool))
        out[f"image_score_{k}"], out[f"image_logits_{k}"] = scores[best], logits[best]
    return out


def record_clip(checkout: Path, name: str, state: dict, images: list, inputs: torch.Tensor, script: dict) -> dict:
    """EfficientTAM's video predictor stepped frame by frame, as a live stream drives it."""
    import cv2

    predictor = reference_network(checkout, name, SIZE, True)
    predictor.load_state_dict(state, strict=True)
    with tempfile.TemporaryDirectory() as folder:
        for t, image in enumerate(images):
            cv2.imwrite(str(Path(folder) / f"{t:05d}.jpg"), image[..., ::-1])
        run = predictor.init_state(folder)
    run["images"], run["cached_features"] = inputs, {}
    out = {}
    for t in range(len(images)):
        masks = {}
        if run["obj_ids"]:
            for _, ids, logits in predictor.propagate_in_video(run, start_frame_idx=t, max_frame_num_to_track=0):
                masks = {i: (logits[k, 0] > 0).numpy() for k, i in enumerate(ids)}
        for object_id, given in script.get(t, []):
            _, ids, logits = predictor.add_new_points_or_box(run, t, object_id, **given)
            masks = {i: (logits[k, 0] > 0).numpy() for k, i in enumerate(ids)}
        for object_id, mask in masks.items():
            out[f"clip_{t}_{object_id}"] = np.packbits(mask)
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]).expanduser().resolve())
