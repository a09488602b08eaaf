"""sam2_bench writes the JSON keys that scripts read (a benchmark, so no timing is asserted)."""
import pytest

from conftest import bench_suite
from sam2_ros.tools.bench import bench_gpu, gpu_runs

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


def test_core_suite_writes_every_documented_key(tmp_path, checkpoint):
    results = bench_suite(tmp_path, "core", checkpoint, "--repeats", "1", "--everything-points", "4", keys=CORE_KEYS)
    assert results["device"] == "cpu" and results["image_size"] == 256
    assert all(results[key] > 0 for key in CORE_KEYS - {"device", "model", "image_size", "result_polygons_per_object"})


def test_tracker_suite_runs_ours_and_metas_predictor_side_by_side(tmp_path, checkpoint):
    results = bench_suite(tmp_path, "tracker", checkpoint, "--frames", "3", "--object-frames", "3", keys=TRACKER_KEYS)
    assert results["frames"] == 3 and results["tracker_ms_per_frame"] > 0 and results["meta_ms_per_frame"] > 0


def test_the_gpu_suite_times_what_the_goals_compare_first_then_every_other_run_once():
    """Tiny float32 eager and bfloat16 compiled come before Meta's predictor and the node; no run twice."""
    first, rest = gpu_runs(["edgetam", "tiny"])
    assert first == [("tiny", "float32", False), ("tiny", "bfloat16", True)]
    assert rest == [("edgetam", "float32", False), ("edgetam", "float32", True), ("edgetam", "bfloat16", False),
                    ("edgetam", "bfloat16", True), ("tiny", "float32", True), ("tiny", "bfloat16", False)]
    assert gpu_runs(["large"]) == ([], [("large", "float32", False), ("large", "float32", True),
                                        ("large", "bfloat16", False), ("large", "bfloat16", True)])


def test_the_gpu_suite_refuses_a_model_it_does_not_know_naming_those_it_does():
    with pytest.raises(ValueError, match="no model \\['tiny2'\\]; choose among tiny, large, edgetam"):
        bench_gpu(2, ["tiny", "tiny2"])
