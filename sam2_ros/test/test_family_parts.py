"""What the families share equals the published configs: EdgeTAM's YAML and Meta's video-predictor builder."""
import inspect
import re
from pathlib import Path

import pytest
import yaml
from sam2.build_sam import build_sam2_video_predictor

from sam2_ros.core.networks.family_parts import ATTENTION, MEMORY_DIM, MODEL_DIM, POSTPROCESSING, TRACKING

REFERENCE = Path(__file__).resolve().parents[2] / ".venv" / "reference" / "edgetam"
EDGETAM_YAML = REFERENCE / "sam2" / "configs" / "edgetam.yaml"


@pytest.fixture(scope="module")
def edgetam_config() -> dict:
    if not EDGETAM_YAML.is_file():
        pytest.fail(f"EdgeTAM's reference is not installed in {EDGETAM_YAML.parents[2]}: run `make setup`")
    return yaml.safe_load(EDGETAM_YAML.read_text())["model"]


def test_the_tracking_settings_are_edgetams_published_ones(edgetam_config):
    assert {key: edgetam_config[key] for key in TRACKING} == TRACKING


def test_the_memory_attention_and_encoder_widths_are_edgetams(edgetam_config):
    layer = edgetam_config["memory_attention"]["layer"]
    self_attention = layer["self_attention"]
    assert {key: self_attention[key] for key in ("embedding_dim", "num_heads", "downsample_rate", "dropout")} \
        == ATTENTION
    assert layer["d_model"] == MODEL_DIM and edgetam_config["memory_encoder"]["out_dim"] == MEMORY_DIM


def test_every_network_is_built_with_what_metas_video_predictor_builder_turns_on():
    """The overrides Meta's build_sam2_video_predictor writes, read from its source (fill_hole_area: the tracker's)."""
    overrides = dict(re.findall(r'"\+\+model\.([\w.]+)=(\w[\w.]*)"', inspect.getsource(build_sam2_video_predictor)))
    decoder = {f"sam_mask_decoder_extra_args.{key}": str(value).lower()
               for key, value in POSTPROCESSING["sam_mask_decoder_extra_args"].items()}
    assert {key: overrides[key] for key in decoder} == decoder
    binarize = str(POSTPROCESSING["binarize_mask_from_pts_for_mem_enc"]).lower()
    assert overrides["binarize_mask_from_pts_for_mem_enc"] == binarize
    assert overrides["fill_hole_area"] == "8"
