"""The settings: one YAML of defaults, typed sections read by parameter name, bad values refused with the reason."""
from pathlib import Path

import pytest
import yaml

from sam2_ros.core.settings import DEFAULTS, PARAMS, SECTIONS, NodeConfig

YAML = Path(__file__).resolve().parents[1] / "config" / "sam2_segmenter.yaml"


def flattened(tree: dict, prefix: str = "") -> dict:
    """Parameters as ROS reads a parameter file: nested keys joined by dots (diagnostic_updater.use_fqn)."""
    flat = {}
    for key, value in tree.items():
        flat.update(flattened(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return flat


def shipped() -> dict:
    return flattened(yaml.safe_load(YAML.read_text())["/**"]["ros__parameters"])


def test_yaml_defaults_equal_the_declared_defaults():
    assert shipped() == DEFAULTS
    assert shipped()["diagnostic_updater.use_fqn"] is False  # nested in the file, as diagnostic_updater users write it


def test_every_parameter_has_a_description_and_belongs_to_exactly_one_section():
    assert all(param.description for param in PARAMS)
    names = [param.name for section in SECTIONS.values() for param in section.params()]
    assert len(names) == len(set(names))
    assert set(names) == set(shipped())


def test_a_section_field_reads_the_value_given_under_its_ros_name():
    config = NodeConfig.from_values({**DEFAULTS, "depth_max_age_ms": 80.0, "requests_per_frame": 3,
                                     "everything_points_per_side": 8, "discover_period_s": 2.5, "mode": "image"})
    assert config.depth.max_age_ms == 80.0 and config.requests.per_frame == 3
    assert config.everything.settings().points_per_side == 8
    assert config.discovery.on and config.discovery.period_s == 2.5
    assert not config.tracking.tracks
    assert config.values() == {**DEFAULTS, "depth_max_age_ms": 80.0, "requests_per_frame": 3,
                               "everything_points_per_side": 8, "discover_period_s": 2.5, "mode": "image"}


def test_a_snapshot_never_changes_a_change_is_a_new_snapshot():
    before = NodeConfig()
    after = before.changed(score_threshold=0.5)
    assert (before.output.score_threshold, after.output.score_threshold) == (0.0, 0.5)
    with pytest.raises(AttributeError):
        after.output.score_threshold = 0.7


@pytest.mark.parametrize("change, reason", [
    ({"mode": "video"}, "mode 'video' is not one of: track, image"),
    ({"mask_encoding": "rgb8"}, "mask_encoding 'rgb8' is not one of: mono8, 16UC1"),
    ({"image_qos": "best_effort"}, "image_qos 'best_effort' is not one of: sensor_data, reliable"),
    ({"precision": "int8"}, "precision 'int8' is not one of: auto, float32, bfloat16, float16"),
    ({"image_size": 300}, "image_size must be a multiple of 32, got 300"),
    ({"no_such_thing": 1}, "no such parameter: no_such_thing"),
])
def test_invalid_values_are_refused_with_the_reason(change, reason):
    with pytest.raises(ValueError, match=reason):
        NodeConfig().changed(**change)


def test_a_checkpoint_is_required_to_build_the_model_spec():
    with pytest.raises(ValueError, match="no checkpoint given"):
        NodeConfig().model.spec()


def test_the_shipped_fast_dds_profile_carries_a_1080p_frame_whole_in_shared_memory():
    import xml.etree.ElementTree as ET
    root = ET.parse(YAML.parent / "fastdds_large_images.xml").getroot()
    shm = next(d for d in root.iter() if d.tag.endswith("transport_descriptor")
               and next(c for c in d if c.tag.endswith("type")).text == "SHM")
    segment = int(next(c for c in shm if c.tag.endswith("segment_size")).text)
    assert segment >= 1920 * 1080 * 3, "a 1080p rgb8 frame (6.2 MB) must fit one segment"
    participant = next(p for p in root.iter() if p.tag.endswith("participant"))
    assert participant.get("is_default_profile") == "true"
