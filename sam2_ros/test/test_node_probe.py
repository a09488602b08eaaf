"""The node probe: a real node process timed over real topics (sam2_bench --suite node and --suite prompts)."""
from conftest import bench_suite

NODE_KEYS = {"node_latency_ms_p50", "node_latency_ms_p95", "model_ms_p50", "node_overhead_ms_p50",
             "node_overhead_ms_p95", "node_postprocess_ms_p50", "node_polygons_per_object",
             "node_overhead_ms_p50_0obj", "max_result_age_over_model_period", "stream_result_age_ms_p50",
             "stream_result_age_ms_max", "stream_model_period_ms", "stream_result_interval_ms_p50",
             "stream_age_trend_ms_per_result", "stream_frames_skipped", "node_overhead_ms_p50_3d", "node_3d_ms_p50",
             "node_objects_with_3d_per_frame", "node_latency_ms_p50_8obj", "model_ms_p50_8obj",
             "node_overhead_ms_p50_8obj", "node_fps_over_model_fps"}


def test_node_suite_times_the_node_over_real_topics(tmp_path, checkpoint):
    results = bench_suite(tmp_path, "node", checkpoint, "--node-frames", "2", keys=NODE_KEYS)
    assert results["node_latency_ms_p50"] > 0 and results["max_result_age_over_model_period"] > 0
    assert results["node_objects_with_3d_per_frame"] > 0, "the depth phase gave objects 3D"


PROMPTS_KEYS = {"prompts_frames_per_s_without", "prompts_frames_per_s_with", "prompts_frames_per_s_with_over_without",
                "prompts_depth_wait_ms", "prompts_seconds_per_run"}


def test_prompts_suite_counts_the_frames_the_worker_took_with_and_without_prompts(tmp_path, checkpoint):
    results = bench_suite(tmp_path, "prompts", checkpoint, "--prompt-seconds", "1", keys=PROMPTS_KEYS)
    assert results["prompts_frames_per_s_without"] > 0 and results["prompts_frames_per_s_with"] > 0
