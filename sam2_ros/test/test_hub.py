"""`checkpoint: auto` and sam2_fetch: a model's published checkpoint fetched once by name, then read from the cache.

A local server answers as huggingface.co does (hub_server.py); each fetch runs in a process of
its own, as on a robot, since huggingface_hub reads HF_HOME, HF_ENDPOINT and HF_HUB_OFFLINE when
imported. Nothing here reaches the internet.
"""
import hashlib
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from hub_server import HubServer, SilentHub
from sam2.build_sam import HF_MODEL_ID_TO_FILENAMES

from sam2_ros.core.hub import Published
from sam2_ros.core.networks import registry

TINY = ("facebook/sam2.1-hiera-tiny", "sam2.1_hiera_tiny.pt")
RESOLVED = "/facebook/sam2.1-hiera-tiny/resolve/main/sam2.1_hiera_tiny.pt"  # the hub's URL of that file
LOAD = ("from sam2_ros.core.model import ModelSpec, load_model; "
        "m = load_model(ModelSpec(name={name!r}, checkpoint='auto', device='cpu', image_size=256)); "
        "print('loaded', m.spec.checkpoint)")


def run(home: Path, endpoint: str, *args: str, offline: bool = False) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HOME=str(home), HF_ENDPOINT=endpoint, **({"HF_HUB_OFFLINE": "1"} if offline else {}))
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=300)


def fetch(home: Path, endpoint: str, *models: str, offline: bool = False) -> subprocess.CompletedProcess:
    return run(home, endpoint, "-m", "sam2_ros.tools.fetch", *models, offline=offline)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def weights(checkpoint) -> bytes:
    return Path(checkpoint).read_bytes()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_every_sam2_model_is_fetched_from_the_repository_sam2s_own_from_pretrained_names():
    ours = {(p.repo, p.filename) for p in registry.family_of("tiny").hub.values()}
    meta = {(repo, filename) for repo, (_, filename) in HF_MODEL_ID_TO_FILENAMES.items()}
    assert ours == meta
    assert registry.family_of("tiny").hub["tiny"] == Published(*TINY)


def test_every_model_has_a_published_checkpoint():
    for family in registry.families():
        assert set(family.hub) == set(family.models), family.title


def test_first_fetch_shows_progress_then_the_cache_serves_with_the_hub_gone(tmp_path, weights):
    with HubServer({TINY: weights}) as hub:
        first = fetch(tmp_path, hub.url, "sam2.1_hiera_tiny")
        assert first.returncode == 0, first.stderr
        assert "100%" in first.stderr  # huggingface_hub's progress bar ran to the end
        assert [r[:2] for r in hub.requests if "/resolve/" in r[1]] == [("HEAD", RESOLVED), ("GET", RESOLVED)]
    path = Path(first.stdout.split(": ", 1)[1].strip())
    assert path.is_relative_to(tmp_path / "hub") and sha256(path.read_bytes()) == sha256(weights)

    again = run(tmp_path, hub.url, "-c", LOAD.format(name="sam2.1_hiera_tiny"))  # the server is stopped
    assert again.returncode == 0, again.stderr
    assert again.stdout.split()[-1] == str(path)


def test_a_cached_checkpoint_loads_without_asking_the_hub_not_even_one_that_never_answers(tmp_path, weights):
    """A robot's start-up never waits on its network once the file is there (huggingface_hub alone would ask)."""
    with HubServer({TINY: weights}) as hub:
        assert fetch(tmp_path, hub.url, "sam2.1_hiera_tiny").returncode == 0
    with SilentHub() as silent:
        loaded = run(tmp_path, silent.url, "-c", LOAD.format(name="sam2.1_hiera_tiny"))
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.split()[-1].startswith(str(tmp_path / "hub"))
    # huggingface_hub may ask its agent registry once a day (3 s at most); never the file
    assert not any("/resolve/" in request for request in silent.asked), silent.asked


def test_sam2_fetch_asks_the_hub_for_a_newer_revision_of_a_checkpoint_it_has(tmp_path, weights):
    with HubServer({TINY: weights}) as hub:
        for _ in range(2):
            assert fetch(tmp_path, hub.url, "sam2.1_hiera_tiny").returncode == 0
    asked = [r[0] for r in hub.requests if r[1] == RESOLVED]
    assert asked == ["HEAD", "GET", "HEAD"]  # the same revision: asked, not fetched again


def test_a_download_cut_midway_resumes_where_it_stopped(tmp_path, weights):
    cut = len(weights) // 3
    with HubServer({TINY: weights}, cut_after=cut) as hub:
        done = fetch(tmp_path, hub.url, "tiny")
    assert done.returncode == 0, done.stderr
    gets = [r for r in hub.requests if r[:2] == ("GET", RESOLVED)]
    start = int(gets[1][2].removeprefix("bytes=").removesuffix("-"))  # the second asks for the rest only
    assert gets[0][2] is None and 0 < start <= cut and len(gets) == 2
    assert sha256(Path(done.stdout.split(": ", 1)[1].strip()).read_bytes()) == sha256(weights)


def test_a_corrupt_published_file_is_refused_by_the_loader(tmp_path):
    with HubServer({("facebook/EdgeTAM", "edgetam.pt"): b"<html>rate limited</html>" * 40}) as hub:
        loaded = run(tmp_path, hub.url, "-c", LOAD.format(name="edgetam"))
    assert loaded.returncode != 0
    assert "edgetam.pt' is not a readable PyTorch checkpoint" in loaded.stderr


def test_offline_without_the_file_says_what_to_fetch_where_it_looked_and_how(tmp_path):
    done = fetch(tmp_path, "http://127.0.0.1:9", "efficienttam_ti", offline=True)
    assert done.returncode == 2
    message = done.stderr
    assert "yunyangx/efficient-track-anything/efficienttam_ti.pt" in message
    assert str(tmp_path / "hub") in message and "HF_HUB_OFFLINE is set" in message
    assert "run `sam2_fetch efficienttam_ti`" in message and str(tmp_path) in message


def test_an_unreachable_hub_without_the_file_says_so(tmp_path):
    endpoint = f"http://127.0.0.1:{closed_port()}"
    done = run(tmp_path, endpoint, "-c", LOAD.format(name="sam2.1_hiera_tiny"))
    assert done.returncode != 0
    assert f"the hub at {endpoint} could not be reached" in done.stderr
    assert "facebook/sam2.1-hiera-tiny/sam2.1_hiera_tiny.pt" in done.stderr
    assert "run `sam2_fetch sam2.1_hiera_tiny`" in done.stderr


def test_a_model_the_hub_lacks_and_an_unknown_name_fail_with_the_reason(tmp_path):
    with HubServer({}) as hub:
        done = fetch(tmp_path, hub.url, "edgetam", "no_such_model")
    assert done.returncode == 2
    assert f"{hub.url} has no facebook/EdgeTAM/edgetam.pt" in done.stderr
    assert "unknown model 'no_such_model'" in done.stderr


def test_a_text_detector_is_fetched_by_name_then_loads_from_the_cache_offline(tmp_path):
    from detectors import save_grounding_dino

    saved = save_grounding_dino(tmp_path / "saved")
    files = {("IDEA-Research/grounding-dino-tiny", f.name): f.read_bytes() for f in saved.iterdir()}
    with HubServer(files) as hub:
        fetched = fetch(tmp_path / "home", hub.url, "grounding_dino_tiny")
    assert fetched.returncode == 0, fetched.stderr
    folder = Path(fetched.stdout.split(": ", 1)[1].strip())
    assert sorted(f.name for f in folder.iterdir()) == sorted(name for _, name in files)
    load = ("from sam2_ros.core.text import DetectorSpec, load_detector; "
            "d = load_detector(DetectorSpec('grounding_dino_tiny', 'cpu')); print(d.family.title, d.input_size)")
    for offline in (True, False):  # HF_HUB_OFFLINE set, or a robot out of reach of the hub (server stopped)
        loaded = run(tmp_path / "home", hub.url, "-c", load, offline=offline)
        assert loaded.returncode == 0, loaded.stderr
        assert loaded.stdout.split()[-3:] == ["Grounding", "DINO", "800"]


def test_a_text_detector_not_fetched_is_refused_offline_with_the_command_that_fetches_it(tmp_path):
    done = fetch(tmp_path, "http://127.0.0.1:9", "owlv2_base", offline=True)
    assert done.returncode == 2
    assert "google/owlv2-base-patch16-ensemble" in done.stderr and "run `sam2_fetch owlv2_base`" in done.stderr
