"""The Python package passes ruff: pyflakes, pycodestyle and pep257 docstring rules."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_ruff_finds_nothing():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "sam2_ros", "--config",
                             str(ROOT / "ruff.toml")], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_package_manifests_pass_catkin_pkg_validation():
    from catkin_pkg.package import parse_package
    for name in ("sam2_ros", "sam2_ros_interfaces"):
        package = parse_package(ROOT / name / "package.xml")
        package.validate()
        assert package.name == name
