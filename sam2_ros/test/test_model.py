"""Model loading: names, devices, and checkpoints that are missing, broken, unsafe or foreign."""
import os
from pathlib import Path

import pytest
import torch

from sam2_ros.core.model import (
    MODEL_NAMES,
    CheckpointError,
    ModelSpec,
    config_for,
    load_model,
    write_random_checkpoint,
)


def spec(checkpoint, **kwargs) -> ModelSpec:
    return ModelSpec(checkpoint=str(checkpoint), device="cpu", image_size=256, **kwargs)


def test_every_sam2_and_sam21_size_maps_to_a_config_shipped_in_the_sam2_package():
    import sam2
    for version in ("sam2", "sam2.1"):
        for size in ("tiny", "small", "base_plus", "large"):
            config = config_for(f"{version}_hiera_{size}")
            assert (Path(sam2.__file__).parent / config).is_file(), config
    assert config_for("tiny") == config_for("sam2.1_hiera_tiny")


def test_unknown_model_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown model 'sam3'.*sam2.1_hiera_tiny"):
        config_for("sam3")
    assert "sam2_hiera_large" in MODEL_NAMES


def test_random_checkpoint_round_trips_through_the_real_loader(checkpoint, small_model):
    saved = torch.load(checkpoint, weights_only=True)["model"]
    loaded = small_model.sam.state_dict()
    assert saved.keys() == loaded.keys()
    assert all(torch.equal(saved[key], loaded[key]) for key in saved)
    assert small_model.image_size == 256 and small_model.device.type == "cpu"


def test_tilde_in_checkpoint_path_is_expanded(checkpoint, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(Path(checkpoint).parent))
    model = load_model(spec("~/" + Path(checkpoint).name))
    assert model.sam.image_size == 256


def test_missing_checkpoint_names_the_file_and_where_meta_publishes_checkpoints(tmp_path):
    with pytest.raises(CheckpointError) as error:
        load_model(spec(tmp_path / "sam2.1_hiera_tiny.pt"))
    assert f"checkpoint not found: '{tmp_path / 'sam2.1_hiera_tiny.pt'}'" in str(error.value)
    assert "github.com/facebookresearch/sam2" in str(error.value)


def test_truncated_checkpoint_is_reported_as_truncated(checkpoint, tmp_path):
    broken = tmp_path / "broken.pt"
    broken.write_bytes(Path(checkpoint).read_bytes()[:1_000_000])
    with pytest.raises(CheckpointError, match="is not a readable PyTorch checkpoint: it is truncated"):
        load_model(spec(broken))


def test_a_file_that_is_no_checkpoint_is_reported(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("these are not weights")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_model(spec(text))


def test_a_crafted_pickle_is_refused_without_running_its_code(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.pt"
    torch.save({"model": Payload()}, evil)
    with pytest.raises(CheckpointError, match="holds Python objects other than tensors"):
        load_model(spec(evil))
    assert not marker.exists(), "loading the checkpoint ran code from it"


def test_a_torch_file_without_a_model_state_dict_is_not_a_sam2_checkpoint(tmp_path):
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}}, other)
    with pytest.raises(CheckpointError, match="not a SAM 2 checkpoint: expected a dict with a 'model'"):
        load_model(spec(other))


def test_a_checkpoint_of_another_model_size_says_so_with_key_counts(tmp_path):
    small = write_random_checkpoint(tmp_path / "sam2.1_hiera_small.pt", name="sam2.1_hiera_small")
    with pytest.raises(CheckpointError) as error:
        load_model(spec(small))
    message = str(error.value)
    assert "does not fit model 'sam2.1_hiera_tiny'" in message
    assert "missing keys" in message and "unexpected keys" in message and "of another shape" in message
    assert "another model size" in message


def test_device_and_precision_errors_say_what_to_use(checkpoint):
    with pytest.raises(ValueError, match="invalid device 'gpu0'"):
        load_model(ModelSpec(checkpoint=checkpoint, device="gpu0"))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available; use cpu"):
            load_model(ModelSpec(checkpoint=checkpoint, device="cuda"))
    with pytest.raises(ValueError, match="needs a CUDA device"):
        load_model(spec(checkpoint, precision="bfloat16"))
    with pytest.raises(ValueError, match="unknown precision 'float8'"):
        load_model(spec(checkpoint, precision="float8"))
    with pytest.raises(ValueError, match="image_size must be a multiple of 32"):
        load_model(ModelSpec(checkpoint=checkpoint, device="cpu", image_size=300))


def test_a_decoder_call_on_the_cpu_takes_about_8192_image_tokens_of_prompts(small_model, full_model):
    assert small_model.per_call(40) == 32 and small_model.per_call(8) == 8  # 256: 16 x 16 tokens each
    assert full_model.per_call(8) == 2 and full_model.per_call(8, tokens=4096) == 1  # 1024: 64 x 64
