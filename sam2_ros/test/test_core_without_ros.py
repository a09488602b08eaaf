"""The core is ROS-free: every sam2_ros.core module imports in a Python where no ROS package can be imported."""
import subprocess
import sys
from pathlib import Path

import sam2_ros

ROS_PACKAGES = ("rclpy", "rcl_interfaces", "rosidl_runtime_py", "builtin_interfaces", "std_msgs", "sensor_msgs",
                "geometry_msgs", "visualization_msgs", "diagnostic_msgs", "std_srvs", "sam2_ros_interfaces",
                "vision_msgs", "cv_bridge", "tf2_ros", "lifecycle_msgs")

# Every ROS package is refused at import, as on a machine without ROS; then each core module is imported.
SCRIPT = """
import importlib, importlib.abc, pkgutil, sys
ROS = set(sys.argv[1].split(","))

class NoRos(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ROS:
            raise ModuleNotFoundError(f"No module named {name!r} (ROS is not installed here)")
        return None

sys.meta_path.insert(0, NoRos())
import sam2_ros.core
names = [m.name for m in pkgutil.walk_packages(sam2_ros.core.__path__, "sam2_ros.core.")]
for name in names:
    importlib.import_module(name)
assert not ROS & {name.split(".")[0] for name in sys.modules}, "a ROS package was imported"
print(len(names), "modules:", " ".join(sorted(names)))
"""


def test_every_core_module_imports_with_no_ros_package_importable():
    done = subprocess.run([sys.executable, "-c", SCRIPT, ",".join(ROS_PACKAGES)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    imported = done.stdout.split(":", 1)[1].split()
    expected = {"sam2_ros.core." + str(path.relative_to(Path(sam2_ros.__file__).parent / "core"))
                .removesuffix(".py").replace("/", ".")
                for path in (Path(sam2_ros.__file__).parent / "core").rglob("*.py") if path.name != "__init__.py"}
    assert expected <= set(imported), expected - set(imported)
    for moved in ("settings", "session", "discovery", "work_queue", "networks.registry", "networks.meta_sam2"):
        assert f"sam2_ros.core.{moved}" in imported
