"""The soak: a 30 Hz camera with hostile input mixed in, and every promise kept (sam2_bench --suite soak)."""
from conftest import bench_suite

SOAK_KEYS = {"soak_rss_slope_mb_per_min", "soak_latency_ms_p99_start", "soak_latency_ms_p99_end",
             "soak_header_mismatches", "soak_unanswered_requests", "soak_failures", "soak_frames"}


def test_a_one_minute_soak_keeps_every_promise(tmp_path, checkpoint):
    """A 30 Hz camera with prompts, removals, resets, resolution changes and bad input mixed in."""
    results = bench_suite(tmp_path, "soak", checkpoint, "--minutes", "1", keys=SOAK_KEYS)
    assert results["soak_header_mismatches"] == 0 and results["soak_unanswered_requests"] == 0
    assert results["soak_failures"] == 0 and results["soak_frames"] > 10 and results["soak_requests"] > 10
