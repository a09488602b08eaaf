"""Every module the package imports is declared where its users install from.

ROS packages as `exec_depend`s of package.xml (rosdep installs them), everything else in
requirements/runtime.txt (pip), or in requirements/backends.txt for the optional exported
runtimes. A module that only the development install brings along works in CI and fails on a
robot, so the imports are read from the source, not from what this machine happens to have.
"""
import ast
import importlib.metadata
import sys
from pathlib import Path

from catkin_pkg.package import parse_package
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "sam2_ros" / "sam2_ros"
SOURCES = [*PACKAGE.rglob("*.py"), *(ROOT / "sam2_ros" / "launch").glob("*.py")]  # what a robot runs
OPTIONAL = ROOT / "requirements" / "backends.txt"  # onnxruntime, openvino: backend:= only


def imported_modules() -> dict[str, set[str]]:
    """Return each top-level module the package and its launch file import (anywhere in a file) -> the files."""
    found: dict[str, set[str]] = {}
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(path.name)
    own = ("__future__", "sam2_ros", "sam2_ros_interfaces")
    return {module: files for module, files in found.items() if module not in sys.stdlib_module_names | set(own)}


def requirement_names(path: Path) -> set[str]:
    """Return the distributions a requirements file names, following its `-r` includes."""
    names = set()
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("-r "):
            names |= requirement_names(path.parent / line[3:].strip())
        elif line:
            names.add(canonicalize_name(Requirement(line).name))
    return names


def is_ros_package(distributions: list[str]) -> bool:
    """Tell a ROS package: installed here from a ros-* wheel, or not installable here at all (vision_msgs)."""
    return not distributions or any(d.startswith("ros-") for d in distributions)


def test_every_ros_package_imported_is_an_exec_depend_of_package_xml():
    declared = {dep.name for dep in parse_package(ROOT / "sam2_ros" / "package.xml").exec_depends}
    distributions = importlib.metadata.packages_distributions()
    ros = {module: files for module, files in imported_modules().items()
           if is_ros_package(distributions.get(module, []))}
    assert {"rclpy", "sensor_msgs", "vision_msgs", "launch_ros"} <= set(ros), "ROS packages found, installed or not"
    missing = {module: sorted(files) for module, files in ros.items() if module not in declared}
    assert not missing, f"imported, not in package.xml: {missing}"


def test_every_other_module_imported_is_installed_by_the_runtime_requirements():
    runtime = requirement_names(ROOT / "requirements" / "runtime.txt")
    optional = requirement_names(OPTIONAL)
    distributions = importlib.metadata.packages_distributions()
    missing = {}
    for module, files in imported_modules().items():
        names = {canonicalize_name(d) for d in distributions.get(module, [])}
        if is_ros_package(distributions.get(module, [])):
            continue
        if not names & (runtime | optional):
            missing[module] = (sorted(names), sorted(files))
    assert "torch" in runtime and "opencv-python-headless" in runtime, "the includes are followed"
    assert not missing, f"imported, installed by no runtime requirement: {missing}"

