"""sam2_bench writes the JSON keys that scripts read (a benchmark, so no timing is asserted)."""
from conftest import bench_suite

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
