"""sam2_bench writes the JSON keys that scripts read (a benchmark, so no timing is asserted)."""
from pathlib import Path

import pytest

from conftest import bench_suite
from sam2_ros.tools.bench import bench_gpu, gpu_node_end_to_end, gpu_plan, gpu_ratios, run_steps

CORE_KEYS = {"device", "model", "image_size", "encode_ms", "decode_ms_1obj", "decode_ms_8obj_batched",
             "decode_ms_8obj_sequential", "cached_prompt_ratio", "contours_ms_1080p", "first_prompt_ms",
             "cached_prompt_ms", "result_message_ms", "serialize_ms", "result_polygons_per_object",
             "batched_over_sequential_8obj", "geometry_ms_3obj", "everything_ms", "meta_everything_ms",
             "everything_over_meta", "everything_points_per_side", "everything_points_per_call",
             "meta_everything_ms_same_calls", "everything_over_meta_same_calls"}

TRACKER_KEYS = {"tracker_ms_per_frame", "meta_ms_per_frame", "tracker_rss_growth_mb_per_frame",
                "meta_rss_growth_mb_per_frame", "frames", "meta_init_ms_per_frame", "tracker_retained_state_mb",
                "tracker_rss_mb_after_window", "tracker_rss_mb_end", "tracker_8obj_over_1obj", "tracker_over_meta_8obj",
                "tracker_over_reference_8obj",
                *(f"{who}_ms_per_frame_{n}obj" for who in ("tracker", "reference", "meta") for n in (1, 2, 4, 8))}

GPU_NODE_KEYS = {f"{key}_256" for key in (
    "gpu_node_latency_ms_p50", "gpu_node_postprocess_ms_p50", "gpu_node_polygons_per_object",
    "gpu_stream_result_age_ms_p50", "gpu_stream_model_period_ms", "gpu_stream_frames_skipped", "gpu_node_fps",
    "gpu_node_fps_over_model_fps")}


def test_core_suite_writes_every_documented_key(tmp_path, checkpoint):
    results = bench_suite(tmp_path, "core", checkpoint, "--repeats", "1", "--everything-points", "4", keys=CORE_KEYS)
    assert results["device"] == "cpu" and results["image_size"] == 256
    assert all(results[key] > 0 for key in CORE_KEYS - {"device", "model", "image_size", "result_polygons_per_object"})


def test_tracker_suite_runs_ours_and_metas_predictor_side_by_side(tmp_path, checkpoint):
    results = bench_suite(tmp_path, "tracker", checkpoint, "--frames", "3", "--object-frames", "3", keys=TRACKER_KEYS)
    assert results["frames"] == 3 and results["tracker_ms_per_frame"] > 0 and results["meta_ms_per_frame"] > 0


def test_the_gpu_suite_times_what_the_goals_compare_first_then_every_other_run_once():
    """Tiny float32 eager and bfloat16 compiled, the node, Meta's predictor, TensorRT; then the rest, none twice."""
    assert gpu_plan(["edgetam", "tiny"]) == [
        "tiny_float32", "tiny_bfloat16_compiled", "node", "meta_vos", "tensorrt",
        "edgetam_float32", "edgetam_float32_compiled", "edgetam_bfloat16", "edgetam_bfloat16_compiled",
        "tiny_float32_compiled", "tiny_bfloat16"]
    assert gpu_plan(["large"]) == ["node", "meta_vos", "tensorrt", "large_float32", "large_float32_compiled",
                                   "large_bfloat16", "large_bfloat16_compiled"]


def test_a_resumed_gpu_run_takes_up_at_the_first_step_not_done_and_saves_after_each():
    """A lent machine's call stopped at its limit: the next call runs only what the figures lack."""
    ran, saved = [], []

    def step(name):
        ran.append(name)
        if name == "node":
            raise RuntimeError("CUDA graphs cannot be recorded here")
        return {f"gpu_{name}_ms": 2.5}
    earlier = {"gpu_done": ["tiny_float32"], "gpu_step_s": {"tiny_float32": 30.0}, "gpu_tiny_float32_ms": 9.0}
    results = run_steps(["tiny_float32", "node", "meta_vos"], step, earlier,
                        lambda figures: saved.append(sorted(figures["gpu_done"])))
    assert ran == ["node", "meta_vos"]
    assert saved == [["node", "tiny_float32"], ["meta_vos", "node", "tiny_float32"]]
    assert results["gpu_tiny_float32_ms"] == 9.0 and results["gpu_meta_vos_ms"] == 2.5
    assert results["gpu_skipped"] == ["node: RuntimeError: CUDA graphs cannot be recorded here"]
    assert set(results["gpu_step_s"]) == {"tiny_float32", "node", "meta_vos"}
    assert results["gpu_step_s"]["tiny_float32"] == 30.0  # the earlier call's, kept


def test_the_gpu_ratios_are_ours_over_metas_and_tensorrt_over_pytorch_where_both_were_measured():
    figures = {"gpu_track_ms_1obj_tiny_bfloat16_compiled": 12.0, "gpu_meta_vos_ms_1obj_tiny_bfloat16": 10.0,
               "gpu_track_ms_8obj_tiny_bfloat16_compiled": 40.0, "gpu_track_ms_8obj_tiny_float32_tensorrt": 30.0}
    assert gpu_ratios(figures) == pytest.approx({"gpu_ours_over_meta_vos_1obj_tiny_bfloat16": 1.2,
                                                 "gpu_tensorrt_over_torch_bfloat16_compiled_8obj": 0.75})


def test_the_gpu_suite_refuses_a_model_it_does_not_know_naming_those_it_does():
    with pytest.raises(ValueError, match="no model \\['tiny2'\\]; choose among tiny, large, edgetam"):
        bench_gpu(2, ["tiny", "tiny2"])


def test_the_gpu_suites_node_step_runs_the_node_end_to_end_and_says_what_its_masks_cost(checkpoint):
    """The step a lent GPU runs at 1024, here on the CPU at 256: it must not fail first on a GPU's few minutes."""
    results = gpu_node_end_to_end(Path(checkpoint), device="cpu", image_size=256, compile=False, seconds=2.0,
                                  round_trips=2)
    assert results.keys() == GPU_NODE_KEYS
    assert results["gpu_node_polygons_per_object_256"] > 0, "three box prompts: three outlined objects"
    assert results["gpu_node_postprocess_ms_p50_256"] > 0
    # a 30 Hz camera outpaces the CPU's model: the node delivers at most one result per model frame
    assert 0 < results["gpu_node_fps_over_model_fps_256"] <= 1.2
    assert results["gpu_stream_frames_skipped_256"] > 0
