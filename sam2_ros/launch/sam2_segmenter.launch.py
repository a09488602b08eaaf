"""Start sam2_segmenter_node with the package's parameter file and a remapped image topic.

ros2 launch sam2_ros sam2_segmenter.launch.py image:=/camera/color/image_raw \
    checkpoint:=auto [model:=edgetam] [image_size:=512] [namespace:=left] [rviz:=true] \
    [text_prompt:="cup . red ball"] [text_detector:=owlv2_base] \
    [depth:=/camera/aligned_depth_to_color/image_raw] [camera_info:=/camera/color/camera_info] \
    [backend:=openvino graphs:=~/models/tiny_1024]

Launch arguments left empty never override `params_file`: the file is passed first and only
the arguments given on the command line follow it (sam2_ros/launch_setup.py).
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from sam2_ros.launch_setup import OVERRIDES, node_parameters, remappings, require_package


def nodes(context):
    """Build the segmenter (and RViz) once the arguments are known; nothing starts if RViz is missing."""
    value = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    namespace, rviz = value("namespace"), value("rviz").lower() == "true"
    if rviz:
        require_package("rviz2", "rviz:=true")
    config = os.path.join(get_package_share_directory("sam2_ros"), "config")
    actions = [Node(
        package="sam2_ros", executable="sam2_segmenter_node", name="sam2_segmenter_node", namespace=namespace,
        output="screen",
        parameters=node_parameters(value("params_file"), {name: value(name) for name in OVERRIDES}),
        remappings=remappings(value("image"), value("camera_info"), value("depth")),
    )]
    if rviz:
        actions.append(Node(package="rviz2", executable="rviz2", name="rviz2", namespace=namespace, output="screen",
                            arguments=["-d", os.path.join(config, "sam2_ros.rviz")]))
    return actions


def generate_launch_description() -> LaunchDescription:
    """Declare the arguments a user overrides; every other default lives in the YAML."""
    defaults = os.path.join(get_package_share_directory("sam2_ros"), "config", "sam2_segmenter.yaml")
    return LaunchDescription([
        DeclareLaunchArgument("params_file", default_value=defaults, description="parameter YAML"),
        DeclareLaunchArgument("checkpoint", default_value="",
                              description="the model's checkpoint (.pt), or auto: its published one, fetched once"),
        DeclareLaunchArgument("model", default_value="",
                              description="sam2.1_hiera_tiny, edgetam, efficienttam_ti, ... (default: the file's)"),
        DeclareLaunchArgument("image_size", default_value="",
                              description="input size: 512 for efficienttam_*_512x512 (default: the file's)"),
        DeclareLaunchArgument("precision", default_value="",
                              description="float32 or bfloat16 (CUDA, or a CPU with AMX/AVX512-BF16)"),
        DeclareLaunchArgument("device", default_value="", description="auto, cpu, cuda, cuda:N (default: the file's)"),
        DeclareLaunchArgument("backend", default_value="",
                              description="torch, onnxruntime, openvino or tensorrt (default: the file's)"),
        DeclareLaunchArgument("graphs", default_value="", description="the folder sam2_export wrote (with backend)"),
        DeclareLaunchArgument("text_prompt", default_value="",
                              description="phrases to find and track, '.' between them (default: the file's)"),
        DeclareLaunchArgument("text_detector", default_value="",
                              description="grounding_dino_tiny, owlv2_base, ... or a folder (default: the file's)"),
        DeclareLaunchArgument("compressed", default_value="",
                              description="true: subscribe to IMAGE/compressed (default: the file's)"),
        DeclareLaunchArgument("depth", default_value="",
                              description="registered depth image topic (turns 3D on), or true/false "
                                          "(default: the file's)"),
        DeclareLaunchArgument("image", default_value="image", description="camera image topic"),
        DeclareLaunchArgument("camera_info", default_value="",
                              description="colour camera_info topic (default: beside IMAGE)"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node (and RViz)"),
        DeclareLaunchArgument("rviz", default_value="false", description="open RViz on the overlay and mask"),
        OpaqueFunction(function=nodes),
    ])
