"""The parameter YAML is the one list of defaults, and matches what the node declares."""
from pathlib import Path

import pytest
import yaml

from sam2_ros.ros.params import DEFAULTS, PARAMS, validate

YAML = Path(__file__).resolve().parents[1] / "config" / "sam2_segmenter.yaml"


def test_yaml_defaults_equal_the_declared_defaults():
    assert yaml.safe_load(YAML.read_text())["/**"]["ros__parameters"] == DEFAULTS


def test_every_parameter_has_a_description():
    assert all(param.descriptor().description for param in PARAMS)


@pytest.mark.parametrize("change, reason", [
    ({"mode": "video"}, "mode 'video' is not one of: track, image"),
    ({"mask_encoding": "rgb8"}, "mask_encoding 'rgb8'"),
    ({"image_size": 300}, "multiple of 32"),
])
def test_invalid_values_are_refused_with_the_reason(change, reason):
    with pytest.raises(ValueError, match=reason):
        validate({**DEFAULTS, **change})


def test_a_checkpoint_is_required_to_build_the_model_spec():
    with pytest.raises(ValueError, match="no checkpoint given"):
        validate(DEFAULTS).model_spec
