"""The registry of model families: a new family is one declaration, and load_model serves it unchanged."""
import pytest
import torch

from sam2_ros.core.model import CheckpointError, ModelSpec, load_model, write_random_checkpoint
from sam2_ros.core.networks import registry
from sam2_ros.core.networks.registry import family_of, model_names


def spec(checkpoint, **kwargs) -> ModelSpec:
    return ModelSpec(checkpoint=str(checkpoint), device="cpu", image_size=256, **kwargs)


class ToyNet(torch.nn.Module):
    """A network of a family that is not built in: one convolution, narrow or wide."""

    def __init__(self, width: int, image_size: int):
        super().__init__()
        self.toy_trunk = torch.nn.Conv2d(3, width, 4)
        self.image_size = image_size


def toy_recognise(state) -> str | None:
    weight = state.get("toy_trunk.weight")
    return None if weight is None else {4: "toy_narrow", 8: "toy_wide"}.get(weight.shape[0])


@pytest.fixture
def toy_family():
    family = registry.Family(title="Toy", models={"toy_narrow": 256, "toy_wide": 256},
                             build=lambda name, size: ToyNet(4 if name == "toy_narrow" else 8, size),
                             recognise=toy_recognise, published="toy checkpoints at https://example.invalid/toy")
    registry.register(family)
    yield family
    registry.unregister(family)


def test_a_family_registered_at_run_time_loads_recognises_and_refuses_checkpoints(toy_family, tmp_path, checkpoint):
    """A new family is one declaration: model.py loads, names and refuses its checkpoints unchanged."""
    assert {"toy_narrow", "toy_wide"} <= set(model_names()) and family_of("toy_wide") is toy_family
    narrow = write_random_checkpoint(tmp_path / "toy_narrow.pt", name="toy_narrow", seed=3)
    saved = torch.load(narrow, weights_only=True)["model"]
    assert list(saved) == ["toy_trunk.weight", "toy_trunk.bias"] and saved["toy_trunk.weight"].shape == (4, 3, 4, 4)
    model = load_model(spec(narrow, name="toy_narrow"))
    assert torch.equal(model.sam.toy_trunk.weight, saved["toy_trunk.weight"]) and model.image_size == 256
    assert registry.recognise(saved)[1] == "toy_narrow"
    with pytest.raises(CheckpointError, match="does not fit model 'toy_wide': 0 missing keys, 0 unexpected keys, "
                                              "2 keys of another shape .* set `model: toy_narrow`"):
        load_model(spec(narrow, name="toy_wide"))
    with pytest.raises(CheckpointError, match="does not fit model 'sam2.1_hiera_tiny'.*set `model: toy_narrow`"):
        load_model(spec(narrow))
    with pytest.raises(CheckpointError, match="does not fit model 'toy_wide'.*set `model: sam2.1_hiera_tiny`"):
        load_model(spec(checkpoint, name="toy_wide"))
    with pytest.raises(CheckpointError, match="toy checkpoints at https://example.invalid/toy"):
        load_model(spec(tmp_path / "missing.pt", name="toy_wide"))


def test_a_family_cannot_take_a_model_name_another_family_has(toy_family):
    with pytest.raises(ValueError, match="already registered: toy_narrow"):
        registry.register(registry.Family(title="Again", models={"toy_narrow": 256}, build=toy_family.build,
                                          recognise=toy_recognise))
    registry.unregister(toy_family)
    with pytest.raises(ValueError, match="unknown model 'toy_narrow'"):
        family_of("toy_narrow")
    registry.register(toy_family)  # the fixture takes it out again



def test_every_built_in_model_name_has_one_family_and_each_family_names_its_own_weights():
    """A network built for each family's first name is recognised as that family's (not another's)."""
    from sam2_ros.core.model import build_network
    names = model_names()
    assert len(names) == len(set(names)) == sum(len(f.models) for f in registry.families())
    for family in registry.families():
        name = next(iter(family.models))
        state = build_network(ModelSpec(name=name, image_size=256)).state_dict()
        found = registry.recognise(state)
        assert found is not None and found[0] is family, name
