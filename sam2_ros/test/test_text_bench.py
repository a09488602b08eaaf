"""sam2_bench --suite text: a detector's ms per pass under its name and size, and the frame period beside it."""
from detectors import save_grounding_dino

from conftest import bench_suite


def test_the_text_suite_times_a_saved_detector_and_a_pass_spread_over_tracked_frames(tmp_path, checkpoint):
    folder = save_grounding_dino(tmp_path / "grounding_dino_small")
    results = bench_suite(tmp_path, "text", checkpoint, "--text-detector", str(folder), "--text-size", "320",
                          "--text-frames", "2",
                          keys={"text_detector_ms_grounding_dino_small_320", "text_track_ms_per_frame",
                                *(f"{key}_grounding_dino_small_320" for key in (
                                    "text_frame_period_ms_while", "text_frame_period_ms_max_while",
                                    "text_pass_frames", "text_pass_ms_sliced"))})
    assert results["text_random_weights"] is False and results["text_slice_ms"] == 50.0
    assert results["text_pass_frames_grounding_dino_small_320"] >= 1
