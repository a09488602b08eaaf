"""EdgeTAM's own predictors on a checkpoint: the reference our EdgeTAM must equal.

Run in a subprocess whose import path starts with EdgeTAM's package (`edgetam-dimos`, which
installs a `sam2` module of its own, so it can never share a process with Meta's):

    PYTHONPATH=.venv/reference/edgetam python edgetam_reference.py IN.npz OUT.npz

IN holds the camera frames, the same frames as model inputs (our encoding, so both sides
read the same tensors) and a photo, and as JSON the checkpoint path, the input size and what
the user does. OUT holds every mask, score and logit the predictors give.
"""
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch


def as_meta_runs_it() -> None:
    """Two settings of EdgeTAM's copy of sam2 that are not its model.

    Its backbone asks timm for pretrained weights: the checkpoint brings them instead. Its
    attention pins PyTorch's attention kernels to the math one where there is no CUDA, which
    Meta's sam2 1.1.0 (and ours) leave to PyTorch: same arithmetic, other rounding (2e-7).
    """
    import sam2.modeling.backbones.timm as backbone
    import sam2.modeling.sam.transformer as transformer
    import timm
    backbone.create_model = lambda *args, **kwargs: timm.create_model(*args, **{**kwargs, "pretrained": False})
    transformer.ALLOW_ALL_KERNELS = True


def deployed(model: torch.nn.Module) -> torch.nn.Module:
    """EdgeTAM's network rearranged after loading as the node runs it.

    RepViT re-parameterised by timm's own `fuse` and run channels-last; the neck's lateral
    1x1 convolution of each high-resolution level merged with the decoder's 1x1 projection that
    alone reads it. All of it only reorders float sums; test_edgetam checks the node's network
    against the one as loaded.
    """
    def fuse_below(parent: torch.nn.Module) -> None:
        for name, child in parent.named_children():
            if hasattr(child, "fuse"):
                child = child.fuse()
                setattr(parent, name, child)
            fuse_below(child)
    fuse_below(model.image_encoder.trunk.body)
    model.image_encoder.trunk.to(memory_format=torch.channels_last)
    neck, decoder = model.image_encoder.neck, model.sam_mask_decoder
    with torch.no_grad():
        for lateral, name in ((neck.convs[-1], "conv_s0"), (neck.convs[-2], "conv_s1")):  # finest level last
            a, b = lateral.conv, getattr(decoder, name)
            merged = torch.nn.Conv2d(a.in_channels, b.out_channels, 1)
            wa, wb = a.weight.double()[:, :, 0, 0], b.weight.double()[:, :, 0, 0]
            merged.weight.copy_(torch.einsum("om,mi->oi", wb, wa)[:, :, None, None])
            merged.bias.copy_(torch.einsum("om,m->o", wb, a.bias.double()) + b.bias.double())
            lateral.conv = merged
            setattr(decoder, name, torch.nn.Identity())
    return model


def overrides(image_size: int) -> list[str]:
    """The published config at another input size: EdgeTAM fixes its rotary grid for 1024."""
    side = image_size // 16
    return [f"++model.image_size={image_size}",
            f"++model.memory_attention.layer.self_attention.feat_sizes=[{side},{side}]",
            f"++model.memory_attention.layer.cross_attention.q_sizes=[{side},{side}]"]


def image_results(checkpoint: str, image_size: int, photo: np.ndarray, prompts: list[dict]) -> dict:
    from sam2.build_sam import build_sam2
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    model = build_sam2("configs/edgetam.yaml", checkpoint, device="cpu", hydra_overrides_extra=overrides(image_size))
    predictor = SAM2ImagePredictor(deployed(model))
    side = image_size // 16
    predictor._bb_feat_sizes = [(4 * side, 4 * side), (2 * side, 2 * side), (side, side)]
    predictor.set_image(photo)
    out = {}
    for k, prompt in enumerate(prompts):
        masks, scores, logits = predictor.predict(**{key: np.array(value) if isinstance(value, list) else value
                                                     for key, value in prompt.items()})
        best = int(np.argmax(scores))
        out[f"image_mask_{k}"], out[f"image_score_{k}"] = masks[best], scores[best]
        out[f"image_logits_{k}"] = logits[best]
    return out


def video_results(checkpoint: str, image_size: int, frames: np.ndarray, inputs: torch.Tensor,
                  objects: list[dict]) -> dict:
    """Each object in an inference state of its own (EdgeTAM's predictor takes no new object once
    tracking started), stepped one frame at a time from the frame it was prompted on.
    """
    import cv2
    from sam2.build_sam import build_sam2_video_predictor

    predictor = build_sam2_video_predictor("configs/edgetam.yaml", checkpoint, device="cpu",
                                           hydra_overrides_extra=overrides(image_size) + [
                                               # a correction makes a conditioning frame, as in our tracker
                                               "++model.add_all_frames_to_correct_as_cond=true"])
    deployed(predictor)
    predictor.fill_hole_area = 0  # as Meta's predictor on an install without sam2's CUDA extension
    out = {}
    with tempfile.TemporaryDirectory() as folder:
        for t, frame in enumerate(frames):
            cv2.imwrite(str(Path(folder) / f"{t:05d}.jpg"), frame[..., ::-1])
        for obj in objects:
            state = predictor.init_state(folder)
            state["images"], state["cached_features"] = inputs, {}
            prompts = {int(t): prompt for t, prompt in obj["prompts"].items()}
            start = min(prompts)
            masks = []
            for t in range(start, len(frames)):
                if t > start:
                    for _, _, logits in predictor.propagate_in_video(state, start_frame_idx=t,
                                                                     max_frame_num_to_track=0):
                        pass
                if t in prompts:
                    _, _, logits = predictor.add_new_points_or_box(state, t, obj["id"], **prompts[t])
                masks.append((logits[0, 0] > 0).numpy())
            out[f"video_masks_{obj['id']}"] = np.stack(masks)
    return out


def main(source: str, target: str) -> None:
    as_meta_runs_it()
    given = np.load(source)
    job = json.loads(str(given["job"]))
    checkpoint, image_size = job["checkpoint"], job["image_size"]
    with torch.inference_mode():
        out = image_results(checkpoint, image_size, given["photo"], job["image_prompts"])
        out.update(video_results(checkpoint, image_size, given["frames"], torch.from_numpy(given["inputs"]),
                                 job["objects"]))
    np.savez(target, **out)


if __name__ == "__main__":
    main(*sys.argv[1:3])
