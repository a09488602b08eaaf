"""sam2_export: every part of the per-frame step as a graph, the object count a dynamic axis, the same files twice."""
import hashlib
import json

import onnx
import pytest

from sam2_ros.core.export import MANIFEST
from sam2_ros.tools.export import main as sam2_export

EDGETAM_PARTS = {"image_encoder", "prompt_encoder", "mask_decoder_multi", "mask_decoder_single", "obj_ptr_proj",
                 "memory_encoder", "spatial_perceiver", "memory_attention_first", "memory_attention_7",
                 "memory_attention_14"}


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_edgetam_exports_every_part_with_a_manifest_of_what_it_was_made_for(graphs):
    weights, folder = graphs("edgetam")
    manifest = json.loads((folder / MANIFEST).read_text())
    assert set(manifest["graphs"]) == EDGETAM_PARTS
    assert (manifest["family"], manifest["model"], manifest["image_size"]) == ("EdgeTAM", "edgetam", 256)
    with open(weights, "rb") as stream:
        assert manifest["checkpoint_sha256"] == hashlib.sha256(stream.read()).hexdigest()
    # num_maskmem 7 frames, or 8 prompted frames + the 6 latest; a frame is 256 global + 16 x 16 2D latents;
    # pointers of 8 prompted frames and the 15 latest, each 256 channels as 4 memory tokens of 64
    assert (manifest["frame_buckets"], manifest["frame_tokens"], manifest["pointer_tokens"]) == ([7, 14], 512, 92)
    for name, info in manifest["graphs"].items():
        assert sha256(folder / info["file"]) == info["sha256"], name


@pytest.mark.parametrize("part, fixed", [("mask_decoder_multi", {"image_pe"}), ("memory_encoder", set()),
                                         ("memory_attention_14", {"key_mask"}), ("spatial_perceiver", set())])
def test_the_object_count_is_a_dynamic_axis_of_every_batched_input(graphs, part, fixed):
    _, folder = graphs("edgetam")
    graph = onnx.load(str(folder / f"{part}.onnx"), load_external_data=False).graph
    for tensor in graph.input:
        first = tensor.type.tensor_type.shape.dim[0]
        assert (first.dim_param == "") == (tensor.name in fixed), tensor.name


@pytest.mark.parametrize("part", ["memory_attention_7", "memory_attention_14"])
def test_masked_memory_attention_is_plain_attention_that_runtimes_fuse(graphs, part):
    """Matrix product, softmax, matrix product, and no guard for rows without keys (IsNaN, Where after it)."""
    _, folder = graphs("edgetam")
    graph = onnx.load(str(folder / f"{part}.onnx"), load_external_data=False).graph
    operations = [node.op_type for node in graph.node]
    assert operations.count("Softmax") == 3  # 2 layers less the first self-attention (its own graph)
    assert "IsNaN" not in operations


def test_the_same_checkpoint_exports_the_same_files(graphs, tmp_path):
    weights, folder = graphs("edgetam")
    assert sam2_export(["--model", "edgetam", "--checkpoint", weights, "--image-size", "256",
                        "--out", str(tmp_path)]) == 0
    again = json.loads((tmp_path / MANIFEST).read_text())
    first = json.loads((folder / MANIFEST).read_text())
    assert {n: g["sha256"] for n, g in again["graphs"].items()} == {n: g["sha256"] for n, g in first["graphs"].items()}


@pytest.mark.parametrize("args, message", [
    (["--checkpoint", "/nonexistent.pt"], "/nonexistent.pt"),
    (["--checkpoint", "CKPT", "--max-cond-frames", "0"], "--max-cond-frames must be at least 1, got 0"),
])
def test_a_bad_command_line_fails_with_the_reason_and_writes_nothing(checkpoint, tmp_path, capsys, args, message):
    args = [checkpoint if a == "CKPT" else a for a in args]
    assert sam2_export([*args, "--image-size", "256", "--out", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
