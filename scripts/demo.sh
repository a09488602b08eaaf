#!/usr/bin/env bash
# The main job, run by `make demo`: sample bag -> sam2_segmenter_node -> output bag, contact
# sheet and video under demo_output/, and the replay's summary. Stops everything it started.
set -euo pipefail
out=demo_output
mkdir -p "$out"
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-42}

checkpoint=${SAM2_CHECKPOINT:-}
banner=""
image_size=${SAM2_IMAGE_SIZE:-1024}
# Meta's SAM 2.1 tiny by name, fetched once into the Hugging Face cache, where the hub answers.
# An unreachable hub is asked again for about 25 s (huggingface_hub's retries): say what is going on.
[ -n "$checkpoint" ] || echo "demo: SAM 2.1 tiny by name from the Hugging Face hub or its cache ($out/fetch.log)"
if [ -z "$checkpoint" ] && python -m sam2_ros.tools.fetch sam2.1_hiera_tiny >"$out/fetch.log" 2>&1; then
  checkpoint=auto
fi
if [ -z "$checkpoint" ]; then
  checkpoint=$out/random_sam2.1_hiera_tiny.pt
  [ -f "$checkpoint" ] || python -c "from sam2_ros.core.model import write_random_checkpoint as w; w('$checkpoint')"
  banner="SEEDED RANDOM WEIGHTS - masks mean nothing: the hub did not answer ($out/fetch.log); set SAM2_CHECKPOINT to a .pt"
  image_size=${SAM2_IMAGE_SIZE:-256}
  printf '\n!!! %s !!!\n\n' "$banner"
fi

[ -d "$out/sample_bag" ] || python -m sam2_ros.tools.make_sample_bag "$out/sample_bag" --frames 30

share=$(python -c "from ament_index_python.packages import get_package_share_directory as d; print(d('sam2_ros'))")
prefix=$(python -c "from ament_index_python.packages import get_package_prefix as p; print(p('sam2_ros'))")
# Reliable image QoS: DDS here is loopback-only UDP, which loses large best-effort frames.
PYTHONUNBUFFERED=1 "$prefix/lib/sam2_ros/sam2_segmenter_node" --ros-args --params-file "$share/config/sam2_segmenter.yaml" \
  -p checkpoint:="$checkpoint" -p image_size:="$image_size" -p image_qos:=reliable -p depth:=true \
  -r image:=/camera/image_raw -r prompt:=/sam2/prompt -r camera_info:=/camera/camera_info \
  -r depth:=/camera/aligned_depth_to_color/image_raw -r depth/camera_info:=/camera/aligned_depth_to_color/camera_info \
  >"$out/node.log" 2>&1 &
node=$!
trap 'kill -INT $node 2>/dev/null || true; wait $node 2>/dev/null || true' EXIT
for _ in $(seq 1200); do
  grep -q "active:" "$out/node.log" && break
  if grep -q "cannot configure" "$out/node.log" || ! kill -0 $node 2>/dev/null; then
    cat "$out/node.log"; exit 1
  fi
  sleep 0.1
done

rm -rf "$out/output_bag"
python -m sam2_ros.tools.replay "$out/sample_bag" --out "$out/output_bag"
python -m sam2_ros.tools.render_bag "$out/output_bag" --video "$out/overlay.mp4" \
  --sheet "$out/contact_sheet.png" --banner "$banner" --force
[ -z "$banner" ] || printf '\n!!! %s !!!\n' "$banner"
echo "demo outputs: $out/output_bag $out/contact_sheet.png $out/overlay.mp4 (node log: $out/node.log)"
