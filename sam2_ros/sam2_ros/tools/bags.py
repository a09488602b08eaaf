"""ROS 2 bags through the `rosbags` library (the files `ros2 bag` reads and writes)."""
from __future__ import annotations

import importlib
from pathlib import Path

from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
INTERFACES = "sam2_ros_interfaces"


class BagError(RuntimeError):
    """A bag that cannot be used as asked; the message says why."""


def _interface_dir() -> Path:
    """Our .msg files: installed by colcon, or beside this source tree."""
    try:
        from ament_index_python.packages import get_package_share_directory
        return Path(get_package_share_directory(INTERFACES)) / "msg"
    except (ImportError, LookupError):
        return Path(__file__).resolve().parents[3] / INTERFACES / "msg"


def typestore():
    """ROS 2 standard types plus sam2_ros_interfaces (so our messages can be (de)serialised)."""
    store = get_typestore(Stores.ROS2_HUMBLE)
    types = {}
    for path in sorted(_interface_dir().glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"{INTERFACES}/msg/{path.stem}"))
    store.register(types)
    return store


def writer(path: Path, storage: str = "mcap") -> Writer:
    """Open a new bag at `path`, which must not exist yet."""
    if storage not in STORAGES:
        raise BagError(f"unknown storage '{storage}': use {' or '.join(STORAGES)}")
    if path.exists():
        raise BagError(f"'{path}' already exists: give a new path or delete it")
    return Writer(path, version=9, storage_plugin=STORAGES[storage])


def message_class(msgtype: str):
    """Import the rclpy message class of a type name like 'sensor_msgs/msg/Image'."""
    package, kind, name = msgtype.split("/")
    try:
        return getattr(importlib.import_module(f"{package}.{kind}"), name)
    except (ImportError, AttributeError):
        raise BagError(f"message type '{msgtype}' is not available in this ROS installation") from None
