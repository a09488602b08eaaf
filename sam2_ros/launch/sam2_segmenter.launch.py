"""Start sam2_segmenter_node with the package's parameter file and a remapped image topic.

ros2 launch sam2_ros sam2_segmenter.launch.py image:=/camera/color/image_raw \
    checkpoint:=~/models/sam2.1_hiera_tiny.pt
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description() -> LaunchDescription:
    """Declare the arguments a user overrides; every other default lives in the YAML."""
    config = os.path.join(get_package_share_directory("sam2_ros"), "config")
    defaults = os.path.join(config, "sam2_segmenter.yaml")
    arguments = [
        DeclareLaunchArgument("params_file", default_value=defaults, description="parameter YAML"),
        DeclareLaunchArgument("checkpoint", description="Meta's SAM 2 checkpoint (.pt)"),
        DeclareLaunchArgument("model", default_value="sam2.1_hiera_tiny", description="SAM 2 model"),
        DeclareLaunchArgument("device", default_value="auto", description="auto, cpu, cuda, cuda:N"),
        DeclareLaunchArgument("image", default_value="image", description="camera image topic"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
        DeclareLaunchArgument("compressed", default_value="false",
                              description="subscribe to IMAGE/compressed (jpeg/png) instead of IMAGE"),
        DeclareLaunchArgument("rviz", default_value="false", description="open RViz on the overlay and mask"),
    ]
    node = Node(
        package="sam2_ros",
        executable="sam2_segmenter_node",
        name="sam2_segmenter_node",
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        parameters=[
            LaunchConfiguration("params_file"),
            {
                "checkpoint": LaunchConfiguration("checkpoint"),
                "model": LaunchConfiguration("model"),
                "device": LaunchConfiguration("device"),
                "compressed": LaunchConfiguration("compressed"),
            },
        ],
        remappings=[("image", LaunchConfiguration("image")),
                    ("image/compressed", [LaunchConfiguration("image"), "/compressed"])],
    )
    rviz = Node(package="rviz2", executable="rviz2", name="rviz2", output="screen",
                arguments=["-d", os.path.join(config, "sam2_ros.rviz")],
                condition=IfCondition(LaunchConfiguration("rviz")))
    return LaunchDescription([*arguments, node, rviz])
