"""Every command the README and docs/ show works as typed where they say it runs.

A shell block that starts with `# on a robot` is for a robot's ROS 2 workspace (ros2cli,
launch and rosdep are not installable here). Every other command is checked in a fresh shell
after the repository's set-up step (`source scripts/env.sh`), without doing the long work it
starts: a tool is run with its own arguments and `--help` appended (argparse rejects a wrong
argument or choice before it reads `--help`), a make target with `make -n`, a script is parsed.
"""
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from sam2_ros.core.settings import PARAMS

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
TOOLS = ("sam2_bench", "sam2_replay", "sam2_render", "sam2_make_sample_bag", "sam2_export", "sam2_fetch")
ROBOT = "# on a robot"
RUNS_HERE = re.compile(rf"^(make |source scripts/env\.sh|bash scripts/|python3 scripts/|"
                       rf"(sam2_segmenter_node|{'|'.join(TOOLS)})(\s|$))")


def shell_blocks(path: Path) -> list[tuple[int, list[str]]]:
    """Each ```bash block of a markdown file: (its first line number, its lines)."""
    blocks, lines, start = [], None, 0
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.startswith("```bash"):
            lines, start = [], number
        elif line.startswith("```") and lines is not None:
            blocks.append((start, lines))
            lines = None
        elif lines is not None:
            lines.append(line)
    return blocks


def commands(lines: list[str]) -> list[str]:
    """The block's commands: continuation lines joined, comments and blank lines dropped."""
    found, pending = [], ""
    for line in lines:
        line = pending + line.strip()
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        line = re.sub(r"\s+#\s.*$", "", line)  # a trailing comment (none of these commands has " # " in it)
        if line and not line.startswith("#"):
            found.append(line.rstrip(" &"))
    return found


def inline_commands(path: Path) -> list[str]:
    """Commands written in `backticks` in running text that run in this repository."""
    return [code for code in re.findall(r"`([^`\n]+)`", path.read_text())
            if RUNS_HERE.match(code) and "..." not in code and not code.startswith("sam2_*")]


def here_commands() -> list[tuple[str, str]]:
    """(where, command) of every command shown to run in this repository."""
    found = []
    for path in DOCS:
        for start, lines in shell_blocks(path):
            if lines and lines[0].startswith(ROBOT):
                continue
            found += [(f"{path.name}:{start}", command) for command in commands(lines)]
        found += [(f"{path.name} (inline)", command) for command in inline_commands(path)]
    return found


def check(command: str) -> str:
    """The shell line that proves `command` works as typed without running its long work."""
    words = shlex.split(command)
    if words[0] == "make":
        return f"make -n {shlex.join(words[1:])} >/dev/null"
    if command.startswith("source scripts/env.sh"):
        return "command -v sam2_bench >/dev/null"
    if words[0] == "bash":
        return f"test -f {words[1]} && bash -n {words[1]}"
    if words[0] == "python3":
        return f"python3 -m py_compile {words[1]}"
    if words[0] == "sam2_segmenter_node":
        unknown = [arg.split(":=")[0] for flag, arg in zip(words, words[1:])
                   if flag == "-p" and arg.split(":=")[0] not in {p.name for p in PARAMS}]
        assert not unknown, f"{command}: no such parameter {unknown}"
        return "sam2_segmenter_node --help >/dev/null"
    return f"{command} --help >/dev/null"


def test_every_shell_block_is_marked_for_a_robot_or_runs_in_this_repository():
    strays = []
    for path in DOCS:
        for start, lines in shell_blocks(path):
            if lines and lines[0].startswith(ROBOT):
                assert any(c.startswith(("ros2 ", "rosdep ", "colcon ", "export ", "cd ", "git ", "pip "))
                           for c in commands(lines)), f"{path.name}:{start} is marked for a robot but needs none"
                continue
            strays += [f"{path.name}:{start}: {c}" for c in commands(lines) if not RUNS_HERE.match(c)]
    assert not strays, "commands that neither run here nor are marked '# on a robot':\n" + "\n".join(strays)


def test_no_shell_block_writes_optional_arguments_in_brackets():
    """`[device:=cuda]` typed as shown is an argument named '[device'; brackets belong to --help's synopsis."""
    bracketed = [f"{path.name}:{start}: {c}" for path in DOCS for start, lines in shell_blocks(path)
                 for c in commands(lines) if any(word.startswith("[") for word in shlex.split(c))]
    assert not bracketed, "\n".join(bracketed)


def test_the_docs_show_the_quick_start_the_tools_the_benchmarks_and_the_scripts():
    assert len(here_commands()) >= 15, here_commands()


def distinct_proofs() -> list[tuple[str, str]]:
    """here_commands() with each proof once (`sam2_segmenter_node --help` proves three places)."""
    proofs = {}
    for where, command in here_commands():
        proofs.setdefault(check(command), (where, command))
    return list(proofs.values())


@pytest.mark.parametrize("where, command", distinct_proofs(), ids=lambda value: value[:60])
def test_each_command_that_runs_here_works_as_typed_after_the_set_up_step(where, command):
    """Each in a fresh shell after the set-up step, so a broken command fails on its own, at once."""
    script = "set -e\ncd {}\nsource scripts/env.sh\n{}\n".format(shlex.quote(str(REPO)), check(command))
    fresh = {key: value for key, value in os.environ.items()
             if key in ("HOME", "PATH", "LANG", "TERM", "ROS_DOMAIN_ID", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    done = subprocess.run(["bash", "--noprofile", "--norc", "-c", script], capture_output=True, text=True,
                          timeout=300, env=fresh)
    assert done.returncode == 0, f"{where}: {command} failed as typed\n{done.stdout[-1000:]}{done.stderr[-2000:]}"


@pytest.mark.parametrize("command, proof", [
    ("make test PYTEST_ARGS=\"-k segmenter\"", "make -n test 'PYTEST_ARGS=-k segmenter' >/dev/null"),
    ("sam2_bench --suite models", "sam2_bench --suite models --help >/dev/null"),
    ("sam2_segmenter_node --ros-args -p image_qos:=reliable &", "sam2_segmenter_node --help >/dev/null"),
])
def test_how_a_command_is_proven(command, proof):
    assert check(commands([command])[0]) == proof
