"""sam2_export: a checkpoint's per-frame step as ONNX graphs, for the onnxruntime, openvino and tensorrt backends.

Run it once per model, checkpoint and input size (on any machine: the graphs are portable);
the node then runs them with `backend:=onnxruntime graphs:=FOLDER` (or openvino, tensorrt).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from sam2_ros.core.export import ExportError, export
from sam2_ros.core.model import CheckpointError, ModelSpec, load_model
from sam2_ros.core.networks import registry


def main(argv: list[str] | None = None) -> int:
    """Command line: sam2_export --model M --checkpoint F.pt --image-size N --out FOLDER."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=registry.DEFAULT_MODEL, choices=registry.model_names())
    parser.add_argument("--checkpoint", required=True,
                        help="the checkpoint the node loads (a .pt path, or auto: the model's published one)")
    parser.add_argument("--image-size", type=int, default=1024, help="the node's image_size")
    parser.add_argument("--max-cond-frames", type=int, default=8,
                        help="the node's max_cond_frames: memory is padded to hold that many prompted frames")
    parser.add_argument("--out", type=Path, required=True, help="folder for the graphs and manifest.json")
    args = parser.parse_args(argv)
    try:
        if args.max_cond_frames < 1:
            raise ExportError(f"--max-cond-frames must be at least 1, got {args.max_cond_frames}")
        start = time.perf_counter()
        model = load_model(ModelSpec(name=args.model, checkpoint=args.checkpoint, device="cpu", precision="float32",
                                     image_size=args.image_size))
        manifest = export(model, args.out, args.max_cond_frames)
    except (ExportError, CheckpointError, ValueError) as error:
        print(f"sam2_export: {error}", file=sys.stderr)
        return 2
    print(f"wrote {len(manifest.graphs)} graphs and manifest.json to {args.out} "
          f"in {time.perf_counter() - start:.0f} s: {', '.join(manifest.graphs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
