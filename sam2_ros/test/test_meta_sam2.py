"""SAM 2 / 2.1 as Meta's configs build them: names, sizes told from weights, and Meta's arithmetic kept."""
import pytest
import torch
from sam2.build_sam import build_sam2

from sam2_ros.core.networks.meta_sam2 import CONFIGS, build, config_for, recognise


def test_short_names_are_sam2_1_and_every_name_has_a_config_inside_the_sam2_package():
    assert config_for("tiny") == config_for("sam2.1_hiera_tiny") == "configs/sam2.1/sam2.1_hiera_t.yaml"
    assert config_for("sam2_hiera_base_plus") == "configs/sam2/sam2_hiera_b+.yaml"
    assert len(CONFIGS) == 12
    with pytest.raises(ValueError, match="unknown model 'huge'; choose one of: base_plus, large"):
        config_for("huge")


@pytest.mark.parametrize("name", ["sam2.1_hiera_tiny", "sam2_hiera_small"])
def test_the_name_is_told_back_from_the_weights_of_metas_own_build(name):
    """Meta's build_sam2 (no overrides of ours) makes the state dict a checkpoint of this model holds."""
    state = build_sam2(config_for(name), ckpt_path=None, device="cpu").state_dict()
    assert recognise(state) == name


def test_weights_of_another_family_are_not_claimed():
    assert recognise({}) is None
    vit = {"image_encoder.trunk.patch_embed.proj.weight": torch.zeros(96, 3, 7, 7),
           "image_encoder.neck.convs.0.conv_1x1.weight": torch.zeros(1)}  # one-level neck: not Hiera
    assert recognise(vit) is None
    odd = {"image_encoder.trunk.patch_embed.proj.weight": torch.zeros(80, 3, 7, 7),
           **{f"image_encoder.trunk.blocks.{i}.norm1.weight": torch.zeros(1) for i in range(12)}}
    assert recognise(odd) is None, "12 blocks of width 80 is no published Hiera"


def test_our_build_loads_metas_weights_without_a_missing_or_extra_key_and_encodes_as_meta():
    torch.manual_seed(0)
    metas = build_sam2(config_for("tiny"), ckpt_path=None, device="cpu",
                       hydra_overrides_extra=["++model.image_size=256"])
    ours = build("tiny", 256)
    missing, unexpected = ours.load_state_dict(metas.state_dict(), strict=True)
    assert not missing and not unexpected and ours.image_size == 256
    image = torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        theirs, mine = metas.forward_image(image), ours.eval().forward_image(image)
    for a, b in zip(theirs["backbone_fpn"] + theirs["vision_pos_enc"], mine["backbone_fpn"] + mine["vision_pos_enc"]):
        assert torch.equal(a, b)
