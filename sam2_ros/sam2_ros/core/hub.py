"""Published weights by name: fetched once into Hugging Face's cache, then read from it like any path.

`checkpoint: auto` and `sam2_fetch` come here. huggingface_hub does the fetching (progress bar,
resuming a partial download, `HF_HOME`, `HF_ENDPOINT`, `HF_HUB_OFFLINE`); this module knows which
file each model name means and turns the hub's failures into what a user on a robot must do.
"""
from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

AUTO = "auto"  # the `checkpoint` value that means "the model's published checkpoint"
# What a transformers model needs from its repository: configs, tokenizer files and safetensors
# weights (repositories often also hold the same weights as .bin, .msgpack, .h5 or .onnx).
MODEL_FILES = ["*.json", "*.txt", "*.model", "*.safetensors"]
ATTEMPTS = 3  # at a download whose transfer breaks off; each goes on where the last stopped


class FetchError(RuntimeError):
    """A published file could not be had: not in the cache, and the hub not asked or not answering."""


@dataclass(frozen=True)
class Published:
    """One file of a Hugging Face model repository."""

    repo: str  # "facebook/sam2.1-hiera-tiny"
    filename: str  # "sam2.1_hiera_tiny.pt"; "" for a whole repository (a transformers model)

    def __str__(self) -> str:
        return f"{self.repo}/{self.filename}" if self.filename else self.repo


class Progress(tqdm):
    """huggingface_hub's bar, shown where output is not a terminal too (a launch file's log), every 2 s."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **{**kwargs, "disable": False, "mininterval": 2.0})


def cache_dir() -> Path:
    """Where huggingface_hub keeps what it fetched (HF_HUB_CACHE, else HF_HOME/hub)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def fetch(item: Published, model: str, refresh: bool = False) -> Path:
    """Return the file's path in the cache, fetched first when it is not there; FetchError says what to do.

    A checkpoint already in the cache is read without asking the hub: huggingface_hub would first
    ask it for a newer revision, and a hub that takes the connection but never answers (a captive
    portal, a proxy, a robot's flaky link) holds every start-up for its timeout. `refresh` asks it
    all the same (sam2_fetch: a newer revision is fetched). A whole repository (a text detector) is
    asked each time: the cache cannot tell a complete one from a download that broke off.
    """
    from huggingface_hub import constants, errors, hf_hub_download, snapshot_download

    if item.filename and not refresh:
        try:  # only complete files are in the cache's snapshots (a partial one waits apart, to resume)
            return Path(hf_hub_download(item.repo, item.filename, local_files_only=True))
        except errors.LocalEntryNotFoundError:
            pass
    download = hf_hub_download if item.filename else snapshot_download
    # huggingface_hub takes a bar class from 1.0 on (Humble's transformers 4 needs an older one)
    shown = {"tqdm_class": Progress} if "tqdm_class" in inspect.signature(download).parameters else {}
    try:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                if item.filename:
                    return Path(hf_hub_download(item.repo, item.filename, **shown))
                return Path(snapshot_download(item.repo, allow_patterns=MODEL_FILES, **shown))
            except Exception as error:  # only a transfer that broke off is tried again
                if not _broke_off(error):
                    raise
                if attempt == ATTEMPTS:
                    raise FetchError(f"fetching {item} from {constants.ENDPOINT} broke off {ATTEMPTS} times "
                                     f"({type(error).__name__}): run `sam2_fetch {model}` again, it goes on "
                                     "where it stopped") from None
    except errors.LocalEntryNotFoundError as error:  # not cached, and the hub was not asked or did not answer
        cause = error.__cause__ or error.__context__
        if isinstance(cause, (errors.RepositoryNotFoundError, errors.EntryNotFoundError)):
            raise FetchError(_missing(item, cause)) from None
        if constants.HF_HUB_OFFLINE:
            why = "HF_HUB_OFFLINE is set"
        else:
            detail = f": {type(cause).__name__}" if cause is not None else ""
            why = f"the hub at {constants.ENDPOINT} could not be reached{detail}"
        raise FetchError(f"{model} needs {item}, which is not in the Hugging Face cache {cache_dir()}, and {why}. "
                         f"On a machine with internet run `sam2_fetch {model}`, then copy "
                         f"{_home()} from there to this machine (or point HF_HOME at a copy)") from None
    except errors.GatedRepoError:
        raise FetchError(f"{item} is gated: accept its licence on huggingface.co, then `hf auth login` "
                         f"(or set HF_TOKEN) and run `sam2_fetch {model}` again") from None
    except (errors.RepositoryNotFoundError, errors.EntryNotFoundError) as error:
        raise FetchError(_missing(item, error)) from None
    except errors.HfHubHTTPError as error:
        raise FetchError(f"fetching {item} from {constants.ENDPOINT} failed: {str(error).splitlines()[0]}") from None


def _broke_off(error: Exception) -> bool:
    """Tell whether the HTTP client gave up midway through a transfer.

    huggingface_hub before 1.0 (Humble's) goes on by itself after a dropped connection or a read
    timeout, but not after a body cut short (requests' ChunkedEncodingError), though it resumes
    from the partial file when asked again; from 1.0 on it goes on by itself.
    """
    kind = type(error)
    return kind.__name__ == "ChunkedEncodingError" and kind.__module__.startswith("requests")


def _missing(item: Published, error: Exception) -> str:
    from huggingface_hub import constants

    return (f"{constants.ENDPOINT} has no {item} ({type(error).__name__}): is HF_ENDPOINT a mirror of "
            "huggingface.co? Download it by hand and give its path instead")


def _home() -> str:
    """Name the folder to copy: HF_HOME as the user set it, else huggingface_hub's default."""
    return os.environ.get("HF_HOME") or "~/.cache/huggingface"
