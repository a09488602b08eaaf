"""sam2_fetch: fetch models' and text detectors' published weights into the Hugging Face cache, ahead of time.

Run it where there is internet (or a mirror in HF_ENDPOINT), then copy the cache (HF_HOME,
~/.cache/huggingface by default) to the robot: `checkpoint: auto` and the text detectors read it there.
"""
from __future__ import annotations

import argparse
import sys

from sam2_ros.core import hub
from sam2_ros.core.networks import registry


def main(argv: list[str] | None = None) -> int:
    """Command line: sam2_fetch MODEL [MODEL ...]; prints each model's path in the cache."""
    parser = argparse.ArgumentParser(description=__doc__)
    names = (*registry.model_names(), *registry.detector_names())
    parser.add_argument("models", nargs="+", metavar="MODEL", help=f"any of: {', '.join(names)}")
    args = parser.parse_args(argv)
    failed = 0
    for name in args.models:
        try:
            published = (registry.detector_of(name).models[name] if name in registry.detector_names()
                         else registry.family_of(name).hub[name])
            path = hub.fetch(published, name, refresh=True)  # a newer revision, if published
        except (hub.FetchError, ValueError) as error:
            print(f"sam2_fetch: {error}", file=sys.stderr)
            failed += 1
            continue
        print(f"{name}: {path}")
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
