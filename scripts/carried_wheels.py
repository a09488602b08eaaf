"""Print the carried wheels this Python lacks: each one unless that very version is installed.

Used by scripts/venv_from_wheels.sh on a machine with no package index. lark is left out: it
must be installed last, over lark-parser's module of the same name.
"""
from __future__ import annotations

import importlib.metadata
import re
import sys
from pathlib import Path

LAST = "lark"


def normal(name: str) -> str:
    """PEP 503's normalised name: a wheel's file name and its metadata spell names differently."""
    return re.sub(r"[-_.]+", "-", name).lower()


def missing(folder: Path) -> list[Path]:
    have = {normal(d.metadata["Name"]): d.version for d in importlib.metadata.distributions()}
    chosen = []
    for wheel in sorted(folder.glob("*.whl")):
        name, version = wheel.name.split("-")[:2]
        if normal(name) != LAST and have.get(normal(name)) != version:
            chosen.append(wheel)
    return chosen


if __name__ == "__main__":
    print("\n".join(str(wheel) for wheel in missing(Path(sys.argv[1]))))
