"""Tests that can fail: break the code one small way at a time and check that its test fails.

Run after `make build`: `python3 scripts/mutation_check.py` (or name files or words of the
descriptions to run some: `python3 scripts/mutation_check.py tracker.py CPU`). Each mutation is applied to the
source (colcon's --symlink-install makes the tests import it), the test guarding it runs, and
the source is restored whatever happens. Exit code 1 when a mutation goes unnoticed.
"""
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "sam2_ros"

# (file, original text, broken text, pytest arguments, what the mutation breaks)
MUTATIONS = [
    ("sam2_ros/ros/conversions.py", "np.rint(values.astype(np.float32) * np.float32(255 / 65535))",
     "np.round(values * 255 / 65535)", "test/test_conversions.py -k 16_bit_grey",
     "16-bit scaling back in uint16 arithmetic"),
    ("sam2_ros/ros/conversions.py", '"rggb": cv2.COLOR_BayerBG2RGB, "bggr": cv2.COLOR_BayerRG2RGB',
     '"rggb": cv2.COLOR_BayerRG2RGB, "bggr": cv2.COLOR_BayerBG2RGB', "test/test_conversions.py -k bayer",
     "Bayer rggb and bggr swapped"),
    ("sam2_ros/ros/conversions.py", '"yuv422": cv2.COLOR_YUV2RGB_UYVY, "uyvy": cv2.COLOR_YUV2RGB_UYVY',
     '"yuv422": cv2.COLOR_YUV2RGB_YUY2, "uyvy": cv2.COLOR_YUV2RGB_YUY2',
     "test/test_conversions.py -k worked_by_hand", "UYVY decoded as YUYV"),
    ("sam2_ros/core/contours.py", "keep = (_pixel_areas(found, outer, mask) >= min_area",
     "keep = (np.array([cv2.contourArea(c) for c in found]) >= min_area", "test/test_contours.py -k pixels",
     "min_area measured as polygon area"),
    ("sam2_ros/core/frames.py", "frames = list(reversed(self._frames.values()))",
     "frames = list(self._frames.values())", "test/test_frames.py",
     "a repeated stamp finds the oldest frame with it"),
    ("sam2_ros/ros/work_queue.py", "or self._jobs_since_frame >= self.jobs_per_frame)",
     "or self._jobs_since_frame >= 10**9)", "test/test_work_queue.py", "requests always before a waiting frame"),
    ("sam2_ros/ros/work_queue.py", "        return sum(job.fail(Refused(reason)) for job in jobs)",
     "        return 0", "test/test_work_queue.py", "close() leaves queued requests unanswered"),
    ("sam2_ros/ros/work_queue.py",
     "        job.future.add_done_callback(lambda future: future.cancelled() and self._forget(job))\n", "",
     "test/test_work_queue.py -k place", "a cancelled job keeps its slot in the queue"),
    ("sam2_ros/core/prompts.py", "scale = np.array([to_w / from_w, to_h / from_h], np.float32)",
     "scale = np.array([to_h / from_h, to_w / from_w], np.float32)", "test/test_prompts.py",
     "rescale swaps x and y"),
    ("sam2_ros/ros/prompt_msgs.py", "scored.append((-score if", "scored.append((score if",
     "test/test_prompt_msgs.py", "detections sorted worst first"),
    ("sam2_ros/ros/clicks.py", "    return float(u / w), float(v / w)", "    return float(v / w), float(u / w)",
     "test/test_clicks.py", "projection returns (v, u)"),
    ("sam2_ros/ros/process.py", "            sys.setswitchinterval(self._previous_interval)\n", "",
     "test/test_node_guarantees.py -k process_tuning", "switch interval not restored"),
    ("sam2_ros/core/tracker.py",
     "            obj.pending, obj.pending_is_cond = pending, pending_is_cond\n            raise",
     "            raise", "test/test_tracker.py -k batch_of_prompts",
     "a rolled-back batch keeps a corrected object's pending prompt"),
    ("sam2_ros/launch_setup.py", 'if text != ""}', "}", "test/test_launch.py -k empty",
     "empty launch arguments override the parameter file"),
    ("sam2_ros/ros/results.py", "sorted(objects, key=lambda o: o.score)", "sorted(objects, key=lambda o: -o.score)",
     "test/test_node.py -k overlapping", "the lower-scoring object wins overlapping label pixels"),
    ("sam2_ros/ros/outputs.py", 'config.output.publish_overlay and self.subscribers("overlay"):',
     'config.output.publish_overlay:', "test/test_node.py -k overlay_is_drawn",
     "the overlay drawn for nobody"),
    ("sam2_ros/core/segmenter.py", 'mode="bilinear", align_corners=False, antialias=True)',
     'mode="bilinear", align_corners=False, antialias=False)', "test/test_segmenter.py -k binary_mask",
     "a binary mask prompt downscaled without antialiasing"),
    ("sam2_ros/core/geometry.py", "(f_colour / f_depth)", "(f_depth / f_colour)", "test/test_geometry.py",
     "depth registered with the focal ratio upside down"),
    ("sam2_ros/core/geometry.py", "dtype=np.float32) - np.float32(intrinsics.cx))",
     "dtype=np.float32) - np.float32(intrinsics.cy))", "test/test_geometry.py",
     "back-projection with the wrong principal point"),
    ("sam2_ros/core/geometry.py", "* np.float32(0.001)", "* np.float32(0.01)", "test/test_geometry.py",
     "16UC1 read as centimetres"),
    ("sam2_ros/core/geometry.py", "max(outlier_sigmas * spread, min_band_m)", "outlier_sigmas * spread + 10.0",
     "test/test_geometry.py -k flying", "no depth outlier rejection"),
    ("sam2_ros/core/geometry.py", "(c[:, 0] << 16) | (c[:, 1] << 8) | c[:, 2]",
     "(c[:, 2] << 16) | (c[:, 1] << 8) | c[:, 0]", "test/test_geometry.py -k layout", "cloud colour as bgr"),
    ("sam2_ros/ros/depth.py", "key=lambda pair: pair[0], default=None)", "key=lambda pair: -pair[0], default=None)",
     "test/test_node_depth.py -k closest", "the depth frame furthest in stamp is paired"),
    ("sam2_ros/ros/spatial.py", "markers = [Marker(header=header, action=Marker.DELETEALL)]", "markers = []",
     "test/test_node_depth.py -k ghost", "markers of removed objects stay in RViz"),
    ("sam2_ros/ros/vision.py", "box.x_offset + box.width / 2", "box.x_offset + box.width",
     "test/test_vision.py -k pixel_edge", "Detection2D centre at the box's right edge"),
    ("sam2_ros/core/everything.py", "np.count_nonzero(proposal.mask & other) > max_overlap * area",
     "np.count_nonzero(proposal.mask & other) >= max_overlap * area", "test/test_everything.py -k new_unless",
     "a proposal exactly half on a tracked object counted as covered"),
    ("sam2_ros/core/everything.py", "iou_threshold=self._everything.settings.box_nms_thresh)",
     "iou_threshold=1.0)", "test/test_everything.py -k chelsea", "no duplicate removal after the last batch"),
    ("sam2_ros/core/tracker.py", '"maskmem_features": own(memory[i:i + 1])', '"maskmem_features": own(memory[0:1])',
     "test/test_tracker.py -k late_corrected", "every object of a batch remembers the first one's mask"),
    ("sam2_ros/core/tracker.py", "for first in range(0, len(group), size)]",
     "for first in range(0, len(group), size) if first == 0]", "test/test_tracker.py -k 1024_image_tokens",
     "objects beyond the first step's batch are not tracked"),
    ("sam2_ros/core/model.py", "return max(1, min(wanted, tokens // side**2))", "return max(1, tokens // side**2)",
     "test/test_model.py -k tokens", "a CPU call takes more prompts than there are"),
    ("sam2_ros/core/everything.py", "self._chunks = [(index, points[first:first + chunk])",
     "self._chunks = [(index, points[first:first + 1])", "test/test_everything.py -k few_points",
     "each decoder call on the CPU keeps only its first point"),
    ("sam2_ros/core/segmenter.py", "for first in range(0, len(alike), size)):",
     "for first in range(0, len(alike), size + 1)):",
     "test/test_segmenter.py -k full_size", "a prompt between two CPU calls is never decoded"),
    ("sam2_ros/ros/session.py", "            return dict(self._labels)", "            return self._labels",
     "test/test_session.py -k copy", "a reader gets the live state, not a copy"),
    ("sam2_ros/ros/outputs.py", 'self._pubs["mask"].publish(label_image(objects, frame.header, hw, settings))',
     'self._pubs["mask"].publish(label_image(objects, frame.header, hw, self._node.config().output_settings))',
     "test/test_node_liveness.py -k settings_it_was", "the label image re-reads the live settings mid-frame"),
    ("sam2_ros/ros/session.py", "while (proposals := run.step_for(slice_s)) is None:",
     "while (proposals := run.step(10**9)) is None:", "test/test_node_liveness.py -k deactivate_ends",
     "segment everything runs whole, holding the camera and transitions"),
    ("sam2_ros/core/frames.py", "if max_age_ns and newest.stamp_ns - stamp_ns > max_age_ns:  # a kept",
     "if False and newest.stamp_ns - stamp_ns > max_age_ns:  # a kept",
     "test/test_frames.py -k exactly", "prompt_max_age_s skipped for a kept frame's exact stamp"),
    ("sam2_ros/ros/results.py", "ordered = sorted(objects, key=lambda obj: obj.object_id)",
     "ordered = list(objects)", "test/test_node_liveness.py -k ascending", "results in arrival order, not by id"),
    ("sam2_ros/ros/session.py", "scaled = [replace(p, mask=resized(p.mask, newest.image_hw)) for p in proposals]",
     "scaled = proposals", "test/test_session.py -k smaller_frame", "discovery compares masks of two frame sizes"),
    ("sam2_ros/tools/make_sample_bag.py", 'cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))',
     'cv2.imencode(".png", rgb)', "test/test_bag_tools.py -k png_compressed",
     "the compressed sample bag stores red as blue"),
    ("sam2_ros/ros/depth.py", "while len(self._frames) > MAX_KEPT or abs(stamp - self._frames[0][0]) > window:",
     "while len(self._frames) > 10:", "test/test_depth_pairing.py -k kept_by_time", "depth paired by count again"),
    ("sam2_ros/ros/conversions.py", 'order = ">" if msg.is_bigendian else "<"', 'order = "<"',
     "test/test_depth_pairing.py -k 32fc1", "a 32FC1 depth image read in the wrong byte order"),
    ("sam2_ros/ros/outputs.py", "        if not depth.enabled:\n            return",
     "        if not depth.enabled or scene is None:\n            return", "test/test_node_depth.py -k no_ghosts",
     "markers and cloud left as they were on a frame without depth"),
    ("sam2_ros/tools/replay.py", "tqdm(read(plan), total=plan.messages,", "tqdm(list(read(plan)), total=plan.messages,",
     "test/test_bag_tools.py -k replay_memory", "replay reads the whole bag into memory first"),
    ("sam2_ros/ros/delivery.py", "self._scene(frame, config, 0.0 if self._hurry.is_set() else parcel.deadline)",
     "self._scene(frame, config, 0.0)", "test/test_node_depth.py -k after_its_colour",
     "a frame's outputs never wait for a depth frame still on its way"),
    ("sam2_ros/ros/results.py", "if obj.presence <= 0.5 or", "if obj.presence < 0.5 or",
     "test/test_results.py -k boundaries", "presence exactly 0.5 shown, where Meta's predictor calls it absent"),
    ("sam2_ros/ros/results.py", "or obj.score < settings.score_threshold:", "or obj.score <= settings.score_threshold:",
     "test/test_results.py -k boundaries", "a score equal to score_threshold hidden"),
    ("sam2_ros/ros/clicks.py", "    if not p.any():\n        p = np.hstack(", "    if True:\n        p = np.hstack(",
     "test/test_clicks.py -k rectified", "a rectified camera's click projected with K instead of P"),
    ("sam2_ros/core/contours.py", "cv2.approxPolyDP(found[index], epsilon, closed=True)",
     "cv2.approxPolyDP(found[index], 2 * epsilon, closed=True)", "test/test_contours.py -k within_epsilon",
     "contours simplified twice as coarsely as contour_epsilon says"),
    ("sam2_ros/ros/prompt_msgs.py", "labels = np.array(list(msg.point_labels), np.int32)",
     "labels = np.ones(len(msg.point_labels), np.int32)", "test/test_prompt_msgs.py -k background",
     "a Prompt message's background clicks become foreground clicks"),
    ("sam2_ros/core/tracker.py", "labels = [torch.as_tensor(prompt.point_labels, dtype=torch.int32)]",
     "labels = [torch.ones(len(prompt.point_labels), dtype=torch.int32)]",
     "test/test_tracker.py -k background_clicks", "the tracker treats a background click as a foreground one"),
    ("sam2_ros/ros/session.py", "round(config.tracking.prompt_max_age_s * 1e9)",
     "round(config.tracking.prompt_max_age_s * 1e6)", "test/test_node_params.py -k prompt_max_age_s",
     "prompt_max_age_s read as milliseconds"),
    ("sam2_ros/ros/delivery.py", "round(config.depth.max_age_ms * 1e6)", "round(config.depth.max_age_ms * 1e9)",
     "test/test_node_depth.py -k milliseconds", "depth_max_age_ms read as seconds"),
    ("sam2_ros/ros/session.py", "return ids, newest, self._tracker.current()",
     "return ids, source, self._tracker.current()", "test/test_node.py -k older_frame_of_the_same_size",
     "a track-mode prompt's result carries the older frame's header, not the frame it describes"),
    ("sam2_ros/core/everything.py", "stability_score_thresh: float = 0.95", "stability_score_thresh: float = 0.9",
     "test/test_everything.py -k defaults_are", "segment everything's default drifts from Meta's generator"),
    ("sam2_ros/core/everything.py", "        if settings.stability_score_thresh > 0:\n",
     "        if False:\n", "test/test_everything.py -k graded", "segment everything never filters by stability"),
    ("sam2_ros/ros/requests.py", "self._outcome(job, self._settings().requests.timeout_s)",
     "self._outcome(job, self._settings().requests.timeout_s / 1000)", "test/test_node_params.py -k request_timeout",
     "request_timeout_s read as milliseconds"),
    ("sam2_ros/ros/delivery.py", "config.depth.wait_ms / 1e3", "config.depth.wait_ms / 1e6",
     "test/test_node_depth.py -k depth_wait_ms", "depth_wait_ms read as microseconds"),
    ("sam2_ros/ros/inputs.py", "self.detections_quiet_for() > timeout_s",
     "self.detections_quiet_for() > timeout_s / 1e3",
     "test/test_node_params.py -k detections_timeout", "detections_timeout_s read as milliseconds"),
    ("sam2_ros/ros/discovery.py", "< config.discovery.period_s", "< config.discovery.period_s / 1e3",
     "test/test_node_params.py -k discover_period", "discover_period_s read as milliseconds"),
    ("sam2_ros/ros/depth.py", "return round(self._window_s * 1e9)", "return round(self._window_s * 1e6)",
     "test/test_node_depth.py -k depth_window", "depth_window_s read as milliseconds"),
    ("sam2_ros/ros/session.py", "            with self._tracker.transaction():\n", "            if True:\n",
     "test/test_node_guarantees.py -k last_prompt", "~/add_objects failing late keeps what went through"),
    ("sam2_ros/core/perceiver.py", "torch.cat([torch.zeros_like(latents), local_pos], dim=1)",
     "torch.cat([local_pos, torch.zeros_like(latents)], dim=1)", "test/test_edgetam.py -k clip",
     "EdgeTAM: the 2D latents' positions given to the global latents"),
    ("sam2_ros/core/edgetam.py",
     "torch.cat([frames[..., :-grid, :], rotated(frames[..., -grid:, :], self.freqs_k)], dim=-2)",
     "torch.cat([rotated(frames[..., :grid, :], self.freqs_k), frames[..., grid:, :]], dim=-2)",
     "test/test_edgetam.py -k clip", "EdgeTAM: rotary encoding on the global latents, not the 2D ones"),
    ("sam2_ros/core/edgetam.py", 'fpn_interp_model="nearest"', 'fpn_interp_model="bilinear"',
     "test/test_edgetam.py -k single_images", "EdgeTAM: SAM 2's default neck upsampling"),
    ("sam2_ros/core/model.py", 'version = "sam2.1" if "no_obj_embed_spatial" in state else "sam2"',
     'version = "sam2.1"', "test/test_model.py -k name_its_model", "every SAM 2 checkpoint named SAM 2.1"),
    ("sam2_ros/core/model.py", "    if not (this_cpu_bf16_flags() if cpu_flags is None else cpu_flags):\n",
     "    if False:\n", "test/test_model.py -k bfloat16", "bfloat16 allowed on any CPU"),
    ("sam2_ros/core/efficienttam.py", "q @ k_avg.transpose(-2, -1) * scale + 2 * math.log(2)",
     "q @ k_avg.transpose(-2, -1) * scale", "test/test_efficienttam.py -k clip",
     "EfficientTAM _1: averaged keys' weight not restored"),
    ("sam2_ros/core/efficienttam.py", "maps = F.avg_pool2d(maps, 2, stride=2)",
     "maps = F.avg_pool2d(maps.reshape(*maps.shape[:-2], side // 4, side * 4), (1, 4), stride=(1, 4))",
     "test/test_efficienttam.py -k clip", "EfficientTAM: memory averaged over 4 tokens of a row, not 2x2"),
    ("sam2_ros/core/efficienttam.py", "0 if i % global_every == global_every - 1 else window", "window",
     "test/test_efficienttam.py -k single_images", "EfficientTAM: every ViT block windowed"),
    ("sam2_ros/core/efficienttam.py", 'mode="bicubic"', 'mode="bilinear"',
     "test/test_efficienttam.py -k single_images", "EfficientTAM: position embedding resized bilinearly"),
    ("sam2_ros/core/edgetam.py", "                fuse_below(child)\n", "",
     "test/test_edgetam.py -k rearranged", "EdgeTAM: only RepViT's top-level blocks fused"),
    ("sam2_ros/core/edgetam.py", "outer @ first.bias.double() + then.bias.double()", "then.bias.double()",
     "test/test_edgetam.py -k rearranged", "EdgeTAM: the merged convolution drops the neck's bias"),
    ("sam2_ros/core/edgetam.py", "lateral = neck.convs[coarsest - level]", "lateral = neck.convs[level]",
     "test/test_edgetam.py -k rearranged", "EdgeTAM: the decoder's projections merged into the coarse levels"),
    ("sam2_ros/core/memory_attention.py", "            return kept[2]\n", "            pass\n",
     "test/test_tracker.py -k share_the_frames", "the frame's own self-attention computed again for every object"),
    ("sam2_ros/core/memory_attention.py", "if kept and kept[0][0] is curr and kept[0][1] is curr_pos and",
     "if kept and", "test/test_tracker.py -k late_corrected",
     "a kept self-attention handed to a batch of other features"),
    ("sam2_ros/core/memory_attention.py", "                output = output + layer.dropout3(layer.linear2(hidden))\n",
     "                output = layer.dropout3(layer.linear2(hidden))\n", "test/test_tracker.py -k driven_live",
     "the first memory-attention layer's MLP without its residual"),
    ("sam2_ros/core/sine_maps.py", "self.cache[cache_key] = self.cache[cache_key].contiguous()", "pass",
     "test/test_model.py -k position_maps", "position maps handed out in another layout than Meta's"),
    ("sam2_ros/core/model.py", 'f"++model.memory_encoder.position_encoding._target_={SHARED_SINE}"', "",
     "test/test_model.py -k position_maps", "SAM 2's memory frames keep a copied position map each"),
    ("sam2_ros/tools/replay.py", '            required[prompt_topic] = "prompt"\n', "            pass\n",
     "test/test_bag_tools.py -k hears_the_camera", "sam2_replay publishes prompts nobody hears yet"),
]


def run_test(arguments: str) -> tuple[bool, str]:
    """Run pytest in the project's environment; return whether it failed and its summary line."""
    command = (f"cd {REPO} && source .venv/bin/activate && source install/setup.bash && "
               f"export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST && cd sam2_ros && "
               f"python -m pytest -q -x -p no:cacheprovider {arguments}")
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=600)
    summary = next((line for line in reversed(done.stdout.splitlines()) if " passed" in line or " failed" in line),
                   "")
    return done.returncode != 0, summary


def main(words: list[str]) -> int:
    """Apply each mutation (those whose file or description names one of `words`, if any) and run its test."""
    chosen = [m for m in MUTATIONS if not words or any(word in m[0] or word in m[4] for word in words)]
    caught = 0
    for path, original, broken, arguments, what in chosen:
        file = PACKAGE / path
        source = file.read_text()
        if source.count(original) != 1:
            print(f"STALE  {what}: the original text is no longer in {path}")
            continue
        file.write_text(source.replace(original, broken))
        try:
            failed, summary = run_test(arguments)
        finally:
            file.write_text(source)
        caught += failed
        print(f"{'CAUGHT' if failed else 'MISSED'} {what} | {arguments} | {summary}", flush=True)
    print(f"{caught} of {len(chosen)} mutations caught")
    return 0 if caught == len(chosen) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
