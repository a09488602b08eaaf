"""Meta's SAM 2 and SAM 2.1 (Hiera image encoders, four sizes), built from the `sam2` package's Hydra configs.

The configs are Meta's own; three of their modules are swapped for ours with the same
arithmetic (`sine_maps.SharedSine`, `memory_attention.FrameMemoryAttention`).
"""
from __future__ import annotations

from torch import nn

from sam2_ros.core.hub import Published
from sam2_ros.core.networks.family_parts import POSTPROCESSING
from sam2_ros.core.networks.registry import Family, StateDict

# Model name -> config inside the `sam2` package. Short names mean SAM 2.1.
CONFIGS = {
    f"{version}_hiera_{size}": f"configs/{version}/{version}_hiera_{abbrev}.yaml"
    for version in ("sam2", "sam2.1")
    for size, abbrev in (("tiny", "t"), ("small", "s"), ("base_plus", "b+"), ("large", "l"))
}
CONFIGS.update({size: CONFIGS[f"sam2.1_hiera_{size}"] for size in ("tiny", "small", "base_plus", "large")})

# (Hiera blocks, patch embedding width) -> size
HIERA_SIZES = {(12, 96): "tiny", (16, 96): "small", (24, 112): "base_plus", (48, 144): "large"}

SHARED_SINE = f"{__package__}.sine_maps.SharedSine"  # Meta's position maps without a copy per frame
FRAME_ATTENTION = f"{__package__}.memory_attention.FrameMemoryAttention"  # the frame's own part once, not per object


def published(name: str) -> Published:
    """Meta's Hugging Face repository of a model, as sam2's own `from_pretrained` names it."""
    full = name if "_hiera_" in name else f"sam2.1_hiera_{name}"
    version, _, size = full.partition("_hiera_")
    return Published(f"facebook/{version}-hiera-{size.replace('_', '-')}", f"{full}.pt")


def config_for(name: str) -> str:
    """Return the `sam2` package config of a SAM 2 model name; unknown names list the known ones."""
    try:
        return CONFIGS[name]
    except KeyError:
        raise ValueError(f"unknown model '{name}'; choose one of: {', '.join(sorted(CONFIGS))}") from None


def build(name: str, image_size: int) -> nn.Module:
    """Meta's architecture of `name` at `image_size`, with the video predictor's settings."""
    from sam2.build_sam import build_sam2

    decoder = [f"++model.sam_mask_decoder_extra_args.{key}={str(value).lower()}"
               for key, value in POSTPROCESSING["sam_mask_decoder_extra_args"].items()]
    overrides = decoder + ["++model.binarize_mask_from_pts_for_mem_enc=true", f"++model.image_size={image_size}",
                           f"++model.image_encoder.neck.position_encoding._target_={SHARED_SINE}",
                           f"++model.memory_encoder.position_encoding._target_={SHARED_SINE}",
                           f"++model.memory_attention._target_={FRAME_ATTENTION}"]
    return build_sam2(config_for(name), ckpt_path=None, device="cpu",
                      hydra_overrides_extra=overrides, apply_postprocessing=False)


def recognise(state: StateDict) -> str | None:
    """Name SAM 2 weights: Hiera's depth and width give the size; SAM 2.1 alone has a spatial no-object embedding."""
    patch = state.get("image_encoder.trunk.patch_embed.proj.weight")
    if patch is None or "image_encoder.neck.convs.0.conv_1x1.weight" in state:  # a plain ViT's one-level neck
        return None
    prefix = "image_encoder.trunk.blocks."
    blocks = {int(key[len(prefix):].split(".")[0]) for key in state if key.startswith(prefix)}
    size = HIERA_SIZES.get((len(blocks), patch.shape[0]))
    version = "sam2.1" if "no_obj_embed_spatial" in state else "sam2"
    return f"{version}_hiera_{size}" if size else None


FAMILY = Family(
    title="SAM 2", models=dict.fromkeys(CONFIGS, 1024), build=build, recognise=recognise,
    published=("Meta publishes the SAM 2.1 checkpoints at https://github.com/facebookresearch/sam2#model-description "
               "(for example https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_tiny.pt)"),
    hub={name: published(name) for name in CONFIGS},
    benchmarked=(("sam2.1_hiera_tiny", 1024), ("sam2.1_hiera_tiny", 512), ("sam2.1_hiera_tiny", 256)),
    bf16_benchmarked=(("sam2.1_hiera_tiny", 256),))
