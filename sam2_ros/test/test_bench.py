"""sam2_bench writes the JSON keys that scripts read (a benchmark, so no timing is asserted)."""
import json

from sam2_ros.tools.bench import main

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

NODE_KEYS = {"node_latency_ms_p50", "node_latency_ms_p95", "model_ms_p50", "node_overhead_ms_p50",
             "node_overhead_ms_p95", "node_postprocess_ms_p50", "node_polygons_per_object",
             "node_overhead_ms_p50_0obj", "max_result_age_over_model_period", "stream_result_age_ms_p50",
             "stream_result_age_ms_max", "stream_model_period_ms", "stream_result_interval_ms_p50",
             "stream_age_trend_ms_per_result", "stream_frames_skipped", "node_overhead_ms_p50_3d", "node_3d_ms_p50",
             "node_objects_with_3d_per_frame", "node_latency_ms_p50_8obj", "model_ms_p50_8obj",
             "node_overhead_ms_p50_8obj"}


def test_core_suite_writes_every_documented_key(tmp_path, checkpoint):
    out = tmp_path / "bench.json"
    assert main(["--suite", "core", "--checkpoint", checkpoint, "--device", "cpu",
                 "--image-size", "256", "--repeats", "1", "--everything-points", "4", "--json", str(out)]) == 0
    results = json.loads(out.read_text())
    assert CORE_KEYS <= results.keys(), CORE_KEYS - results.keys()
    assert results["device"] == "cpu" and results["image_size"] == 256
    assert all(results[key] > 0 for key in CORE_KEYS - {"device", "model", "image_size", "result_polygons_per_object"})


def test_tracker_suite_runs_ours_and_metas_predictor_side_by_side(tmp_path, checkpoint):
    out = tmp_path / "bench.json"
    assert main(["--suite", "tracker", "--checkpoint", checkpoint, "--device", "cpu",
                 "--image-size", "256", "--frames", "3", "--object-frames", "3", "--json", str(out)]) == 0
    results = json.loads(out.read_text())
    assert TRACKER_KEYS <= results.keys(), TRACKER_KEYS - results.keys()
    assert results["frames"] == 3 and results["tracker_ms_per_frame"] > 0 and results["meta_ms_per_frame"] > 0


def test_node_suite_times_the_node_over_real_topics(tmp_path, checkpoint):
    out = tmp_path / "bench.json"
    assert main(["--suite", "node", "--checkpoint", checkpoint, "--device", "cpu", "--image-size", "256",
                 "--node-frames", "2", "--json", str(out)]) == 0
    results = json.loads(out.read_text())
    assert NODE_KEYS <= results.keys(), NODE_KEYS - results.keys()
    assert results["node_latency_ms_p50"] > 0 and results["max_result_age_over_model_period"] > 0
    assert results["node_objects_with_3d_per_frame"] > 0, "the depth phase gave objects 3D"


SOAK_KEYS = {"soak_rss_slope_mb_per_min", "soak_latency_ms_p99_start", "soak_latency_ms_p99_end",
             "soak_header_mismatches", "soak_unanswered_requests", "soak_failures", "soak_frames"}


def test_a_one_minute_soak_keeps_every_promise(tmp_path, checkpoint):
    """A 30 Hz camera with prompts, removals, resets, resolution changes and bad input mixed in."""
    out = tmp_path / "bench.json"
    assert main(["--suite", "soak", "--minutes", "1", "--checkpoint", checkpoint, "--device", "cpu",
                 "--image-size", "256", "--json", str(out)]) == 0
    results = json.loads(out.read_text())
    assert SOAK_KEYS <= results.keys(), SOAK_KEYS - results.keys()
    assert results["soak_header_mismatches"] == 0 and results["soak_unanswered_requests"] == 0
    assert results["soak_failures"] == 0 and results["soak_frames"] > 10 and results["soak_requests"] > 10


PROMPTS_KEYS = {"prompts_frames_per_s_without", "prompts_frames_per_s_with", "prompts_frames_per_s_with_over_without",
                "prompts_depth_wait_ms", "prompts_seconds_per_run"}


def test_prompts_suite_counts_the_frames_the_worker_took_with_and_without_prompts(tmp_path, checkpoint):
    out = tmp_path / "bench.json"
    assert main(["--suite", "prompts", "--checkpoint", checkpoint, "--device", "cpu", "--image-size", "256",
                 "--prompt-seconds", "1", "--json", str(out)]) == 0
    results = json.loads(out.read_text())
    assert PROMPTS_KEYS <= results.keys(), PROMPTS_KEYS - results.keys()
    assert results["prompts_frames_per_s_without"] > 0 and results["prompts_frames_per_s_with"] > 0


def test_the_stream_suite_gives_its_nodes_the_profile_under_one_name_the_distros_fast_dds_reads():
    """Fast DDS 2 (Humble, Jazzy) reads FASTRTPS_..., Fast DDS 3 (Kilted on) FASTDDS_...; both set loads it twice."""
    from sam2_ros.tools.stream import profiles_variable
    assert profiles_variable("humble") == profiles_variable("jazzy") == "FASTRTPS_DEFAULT_PROFILES_FILE"
    assert profiles_variable("kilted") == profiles_variable("rolling") == "FASTDDS_DEFAULT_PROFILES_FILE"
    assert profiles_variable("") == "FASTDDS_DEFAULT_PROFILES_FILE"  # these Kilted wheels set no ROS_DISTRO
