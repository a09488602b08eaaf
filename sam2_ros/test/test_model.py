"""Model loading: names, devices, and checkpoints that are missing, broken, unsafe or foreign."""
import os
from pathlib import Path

import pytest
import torch

from sam2_ros.core.model import (
    CheckpointError,
    ModelSpec,
    build_network,
    check_precision,
    cpu_bf16_flags,
    load_model,
    resolve_precision,
    this_cpu_bf16_flags,
    write_random_checkpoint,
)
from sam2_ros.core.networks import registry
from sam2_ros.core.networks.meta_sam2 import config_for
from sam2_ros.core.networks.registry import family_of, model_names


def spec(checkpoint, **kwargs) -> ModelSpec:
    return ModelSpec(checkpoint=str(checkpoint), device="cpu", image_size=256, **kwargs)


def test_every_sam2_and_sam21_size_maps_to_a_config_shipped_in_the_sam2_package():
    import sam2
    for version in ("sam2", "sam2.1"):
        for size in ("tiny", "small", "base_plus", "large"):
            config = config_for(f"{version}_hiera_{size}")
            assert (Path(sam2.__file__).parent / config).is_file(), config
    assert config_for("tiny") == config_for("sam2.1_hiera_tiny")


def test_unknown_model_name_lists_the_known_ones_of_every_family():
    with pytest.raises(ValueError, match="unknown model 'sam3'.*edgetam.*efficienttam_ti_2.*sam2.1_hiera_tiny"):
        family_of("sam3")
    with pytest.raises(ValueError, match="unknown model 'sam3'"):
        build_network(ModelSpec(name="sam3"))
    with pytest.raises(ValueError, match="unknown model 'sam3'.*sam2.1_hiera_tiny"):
        config_for("sam3")
    assert "sam2_hiera_large" in model_names()


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
    assert "It looks like a 'sam2.1_hiera_small' checkpoint: set `model: sam2.1_hiera_small`" in message


@pytest.mark.parametrize("name, named", [
    ("sam2_hiera_small", "sam2_hiera_small"), ("sam2.1_hiera_base_plus", "sam2.1_hiera_base_plus"),
    ("edgetam", "edgetam"), ("efficienttam_ti_2", "efficienttam_ti"), ("efficienttam_s", "efficienttam_s")])
def test_a_checkpoints_weights_name_its_model(name, named):
    assert registry.recognise(build_network(ModelSpec(name=name, image_size=256)).state_dict())[1] == named
    assert registry.recognise({"unrelated.weight": torch.zeros(1)}) is None


def test_device_and_precision_errors_say_what_to_use(checkpoint):
    with pytest.raises(ValueError, match="invalid device 'gpu0'"):
        load_model(ModelSpec(checkpoint=checkpoint, device="gpu0"))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available; use cpu"):
            load_model(ModelSpec(checkpoint=checkpoint, device="cuda"))
    with pytest.raises(ValueError, match="'float16' needs a CUDA device"):
        load_model(spec(checkpoint, precision="float16"))
    with pytest.raises(ValueError, match="unknown precision 'float8'"):
        load_model(spec(checkpoint, precision="float8"))
    with pytest.raises(ValueError, match="image_size must be a multiple of 32"):
        load_model(ModelSpec(checkpoint=checkpoint, device="cpu", image_size=300))


XEON_SAPPHIRE_RAPIDS = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8\n"
EPYC_ZEN3 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 fma sha_ni\n"
NEOVERSE_V2 = "processor\t: 0\nFeatures\t: fp asimd sve sve2 bf16 i8mm\n"


def test_bfloat16_instruction_sets_are_read_from_cpuinfo_flags_of_x86_and_arm():
    assert cpu_bf16_flags(XEON_SAPPHIRE_RAPIDS) == ["amx_bf16", "avx512_bf16"]
    assert cpu_bf16_flags(EPYC_ZEN3) == []
    assert cpu_bf16_flags(NEOVERSE_V2) == ["bf16"]
    assert cpu_bf16_flags("model name\t: bf16 in a name is not a flag\n") == []


def test_bfloat16_on_the_cpu_is_allowed_only_with_bfloat16_instructions():
    cpu = torch.device("cpu")
    check_precision("bfloat16", cpu, ["amx_bf16"])
    with pytest.raises(ValueError, match="needs bfloat16 instructions .* Use precision float32"):
        check_precision("bfloat16", cpu, [])


def test_every_precision_is_allowed_on_cuda_and_float16_only_there():
    """A CUDA device runs float16 and bfloat16 whatever the host CPU has (its flags play no part)."""
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    for precision in ("float32", "bfloat16", "float16"):
        check_precision(precision, cuda, [])
    check_precision("float32", cpu, [])
    with pytest.raises(ValueError, match="precision 'float16' needs a CUDA device; use float32 or bfloat16 on cpu"):
        check_precision("float16", cpu, ["amx_bf16"])


def test_auto_precision_is_bfloat16_on_a_gpu_with_native_bfloat16_and_float32_elsewhere():
    cuda = torch.device("cuda:1")
    assert resolve_precision("auto", cuda, cuda_capability=(8, 0)) == "bfloat16"  # A100; Orin is 8.7
    assert resolve_precision("auto", cuda, cuda_capability=(9, 0)) == "bfloat16"  # H100
    assert resolve_precision("auto", cuda, cuda_capability=(7, 5)) == "float32"  # T4, Xavier (7.2): emulated
    assert resolve_precision("auto", torch.device("cpu")) == "float32"  # even with AMX: the user opts in
    assert resolve_precision("float16", cuda, cuda_capability=(7, 5)) == "float16", "explicit values are kept"


def test_the_loaded_model_says_the_precision_auto_chose(checkpoint):
    assert load_model(spec(checkpoint)).spec.precision == "float32"  # the default is auto; this is a CPU
    with pytest.raises(ValueError, match="unknown precision 'half'; use auto, float32, bfloat16, float16"):
        load_model(spec(checkpoint, precision="half"))


def test_this_cpu_runs_bfloat16_or_refuses_it_at_load_time(checkpoint):
    if this_cpu_bf16_flags():
        assert load_model(spec(checkpoint, precision="bfloat16")).spec.precision == "bfloat16"
    else:
        with pytest.raises(ValueError, match="which this CPU lacks"):
            load_model(spec(checkpoint, precision="bfloat16"))


def test_a_decoder_call_on_the_cpu_takes_about_8192_image_tokens_of_prompts(small_model, full_model):
    assert small_model.per_call(40) == 32 and small_model.per_call(8) == 8  # 256: 16 x 16 tokens each
    assert full_model.per_call(8) == 2 and full_model.per_call(8, tokens=4096) == 1  # 1024: 64 x 64


def test_bfloat16_autocast_on_the_cpu_segments_and_tracks_as_float32_does(small_model):
    """The bfloat16 path itself, on any CPU (emulated where the CPU lacks the instructions)."""
    import dataclasses

    import numpy as np

    from sam2_ros.core.model import LoadedModel
    from sam2_ros.core.prompts import Prompt
    from sam2_ros.core.tracker import StreamingTracker
    from sam2_ros.tools.scenes import object_box, pan_clip
    bf16 = LoadedModel(sam=small_model.sam, spec=dataclasses.replace(small_model.spec, precision="bfloat16"),
                       device=small_model.device)
    images, truths = pan_clip(4)
    masks = {}
    for model in (small_model, bf16):
        tracker = StreamingTracker(model)
        tracker.track(images[0])
        tracker.add_prompt(Prompt(object_id=1, box=object_box(truths[0])))
        masks[model.spec.precision] = [tracker.track(image).objects[0].mask for image in images[1:]]
    for exact, mixed in zip(masks["float32"], masks["bfloat16"]):
        assert np.count_nonzero(exact & mixed) / max(np.count_nonzero(exact | mixed), 1) > 0.95


@pytest.mark.parametrize("name", ["sam2.1_hiera_tiny", "edgetam", "efficienttam_ti"])
def test_position_maps_equal_metas_and_are_shared_rather_than_copied_per_frame(name):
    """Every family's sine maps hold Meta's numbers, in the layout Meta's copy had, without the copy."""
    from sam2.modeling.position_encoding import PositionEmbeddingSine
    network = build_network(ModelSpec(name=name, image_size=256))
    for module in (network.image_encoder.neck.position_encoding, network.memory_encoder.position_encoding):
        meta = PositionEmbeddingSine(num_pos_feats=2 * module.num_pos_feats, normalize=True, temperature=10000)
        for shape in ((1, 8, 64, 64), (3, 8, 16, 16), (2, 8, 12, 20)):
            x = torch.zeros(shape)
            meta(x)  # Meta's first call fills its cache; every later one copies the cached map
            first, again, want = module(x), module(x), meta(x)
            assert first.shape == want.shape and first.stride()[1:] == want.stride()[1:]
            assert torch.equal(first, want)
            assert again.data_ptr() == first.data_ptr(), "the same map, not a copy"


@pytest.mark.parametrize("found", [None, 3, "weights"], ids=["None", "int", "str"])
def test_a_state_dict_holding_anything_but_a_tensor_under_a_key_is_refused_naming_the_key(checkpoint, tmp_path,
                                                                                           found):
    state = torch.load(checkpoint, weights_only=True)["model"]
    key = "sam_mask_decoder.iou_token.weight"
    assert key in state
    state[key] = found
    odd = tmp_path / "odd.pt"
    torch.save({"model": state}, odd)
    with pytest.raises(CheckpointError, match=rf"holds {type(found).__name__} \(.*\) under '{key}', where a "
                                              r"tensor belongs\. Download it again"):
        load_model(spec(odd))
