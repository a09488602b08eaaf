"""What the launch file hands the node, the parameter file under a namespace, and README's commands."""
import ast
import os
import re
import subprocess
from pathlib import Path

import pytest
import rclpy
import yaml
from ament_index_python.packages import get_package_share_directory
from rcl_interfaces.srv import GetParameters

from rosharness import wait_until
from sam2_ros.launch_setup import node_parameters, remappings, require_package
from test_main import start, wait_for_line

ROOT = Path(__file__).resolve().parents[2]
LAUNCH = Path(__file__).resolve().parents[1] / "launch" / "sam2_segmenter.launch.py"


def test_launch_arguments_left_empty_never_override_the_parameter_file():
    assert node_parameters("/p.yaml", {"checkpoint": "", "model": "", "device": "", "compressed": ""}) == ["/p.yaml"]
    assert node_parameters("/p.yaml", {"checkpoint": "/m.pt", "model": "", "device": "cuda", "compressed": "True"}) \
        == ["/p.yaml", {"checkpoint": "/m.pt", "device": "cuda", "compressed": True}]
    with pytest.raises(ValueError, match="compressed:=yes: use true or false"):
        node_parameters("/p.yaml", {"compressed": "yes"})
    assert node_parameters("/p.yaml", {"depth": "/camera/aligned_depth_to_color/image_raw"}) \
        == ["/p.yaml", {"depth": True}]
    assert node_parameters("/p.yaml", {"depth": "false"}) == ["/p.yaml", {"depth": False}]
    assert node_parameters("/p.yaml", {"model": "efficienttam_ti_512x512", "image_size": "512"}) \
        == ["/p.yaml", {"model": "efficienttam_ti_512x512", "image_size": 512}]
    with pytest.raises(ValueError, match="image_size:=big: use a whole number of pixels"):
        node_parameters("/p.yaml", {"image_size": "big"})


def test_camera_info_sits_beside_its_image_and_a_depth_topic_brings_its_own():
    pairs = dict(remappings("/camera/color/image_raw", depth="/camera/aligned_depth_to_color/image_raw"))
    assert pairs["camera_info"] == "/camera/color/camera_info"
    assert pairs["depth"] == "/camera/aligned_depth_to_color/image_raw"
    assert pairs["depth/camera_info"] == "/camera/aligned_depth_to_color/camera_info"
    assert dict(remappings("image"))["camera_info"] == "camera_info" and "depth" not in dict(remappings("image"))
    assert dict(remappings("/image"))["camera_info"] == "/camera_info"
    assert dict(remappings("/camera/image", camera_info="/info"))["camera_info"] == "/info"
    assert "depth" not in dict(remappings("/camera/image", depth="true"))  # on, at the default topic names


def test_the_launch_file_passes_the_parameter_file_first_and_then_only_the_arguments_given():
    """launch_ros cannot be installed here: the order is read from the launch file's source."""
    tree = ast.parse(LAUNCH.read_text())
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)
             and getattr(node.func, "id", "") == "Node" and any(k.arg == "parameters" for k in node.keywords)]
    assert len(calls) == 1, "one segmenter Node with parameters"
    parameters = next(k.value for k in calls[0].keywords if k.arg == "parameters")
    assert isinstance(parameters, ast.Call) and parameters.func.id == "node_parameters"
    assert ast.unparse(parameters.args[0]) == "value('params_file')"
    declared = [c for c in ast.walk(tree) if isinstance(c, ast.Call) and getattr(c.func, "id", "") ==
                "DeclareLaunchArgument"]
    defaults = {c.args[0].value: ast.unparse(k.value) for c in declared for k in c.keywords if k.arg == "default_value"}
    assert all(defaults[name] == "''" for name in ("checkpoint", "model", "device", "precision", "image_size",
                                                          "compressed", "depth", "camera_info")), defaults


def test_clicks_on_the_overlay_in_rqt_image_view_reach_the_node_under_any_namespace():
    assert ("clicked_pixel", "sam2_segmenter_node/overlay_mouse_left") in remappings("/camera/image_raw")
    assert ("image/compressed", "/camera/image_raw/compressed") in remappings("/camera/image_raw")


def test_rviz_requested_but_missing_stops_the_launch_before_anything_starts():
    with pytest.raises(RuntimeError, match="rviz:=true, but package 'rviz2' is not installed .* nothing was started"):
        require_package("rviz2", "rviz:=true")
    require_package("sam2_ros", "the node")  # installed: no error


def test_the_parameter_file_applies_under_a_namespace(checkpoint, tmp_path):
    shipped = Path(get_package_share_directory("sam2_ros")) / "config" / "sam2_segmenter.yaml"
    params = yaml.safe_load(shipped.read_text())
    assert list(params) == ["/**"]
    params["/**"]["ros__parameters"].update(image_qos="reliable", max_prompt_points=7,  # not the defaults
                                            diagnostic_updater={"use_fqn": True})
    mine = tmp_path / "left.yaml"
    mine.write_text(yaml.safe_dump(params))
    process = start("-r", "__ns:=/left", "--params-file", str(mine), "-p", f"checkpoint:={checkpoint}",
                    "-p", "device:=cpu", "-p", "image_size:=256")
    rclpy.init()
    try:
        wait_for_line(process, "active: listening on /left/image")
        peer = rclpy.create_node("reader")
        client = peer.create_client(GetParameters, "/left/sam2_segmenter_node/get_parameters")
        assert client.wait_for_service(timeout_sec=30), "the node serves no parameters"
        future = client.call_async(GetParameters.Request(names=["image_qos", "max_prompt_points", "image_size",
                                                                "diagnostic_updater.use_fqn"]))
        wait_until(lambda: rclpy.spin_once(peer, timeout_sec=0.05) or future.done(), 30, "the parameters")
        values = future.result().values
        assert (values[0].string_value, values[1].integer_value, values[2].integer_value, values[3].bool_value) \
            == ("reliable", 7, 256, True)
        peer.destroy_node()
    finally:
        rclpy.shutdown()
        process.kill()


def readme_commands() -> list[str]:
    """Each command of the shell blocks of README.md and docs/ that runs one of our tools, by tool name."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    blocks = [b for page in pages for b in re.findall(r"```bash\n(.*?)```", page.read_text(), re.S)]
    lines = [line.strip() for block in blocks for line in block.replace("\\\n", " ").splitlines()]
    tools = {}
    for line in lines:
        match = re.match(r"(ros2 run sam2_ros )?(sam2_\w+)", line)
        if match:
            tools.setdefault(match.group(2), line)
    return sorted(tools)


@pytest.mark.parametrize("tool", readme_commands())
def test_every_tool_the_readme_shows_runs_as_typed_after_its_set_up(tool):
    """In this repository the set-up is `source scripts/env.sh`; on a robot `ros2 run sam2_ros TOOL`."""
    env = {k: v for k, v in os.environ.items() if k not in ("AMENT_PREFIX_PATH", "PYTHONPATH")}
    done = subprocess.run(["bash", "-c", f"source scripts/env.sh && {tool} --help"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "usage:" in done.stdout, done.stdout + done.stderr
    assert "cannot import name '_C'" not in done.stdout + done.stderr


def test_the_rviz_config_shows_the_nodes_outputs_by_relative_topics():
    shipped = Path(get_package_share_directory("sam2_ros")) / "config" / "sam2_ros.rviz"
    displays = yaml.safe_load(shipped.read_text())["Visualization Manager"]["Displays"]
    shown = sorted((d["Class"].split("/")[-1], d["Topic"]["Value"]) for d in displays)
    assert shown == [("Image", "sam2_segmenter_node/mask"), ("Image", "sam2_segmenter_node/overlay"),
                     ("MarkerArray", "sam2_segmenter_node/markers"), ("PointCloud2", "sam2_segmenter_node/points")]
    assert not any(d["Topic"]["Value"].startswith("/") for d in displays), "relative: RViz follows the namespace"
