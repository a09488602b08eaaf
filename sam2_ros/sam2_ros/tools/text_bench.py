"""sam2_bench --suite text: the text prompts' detectors, ms per pass, beside the tracker's ms per frame, in one run.

Each detector runs as its published architecture (Grounding DINO tiny: Swin-T and BERT-base;
OWLv2 base: ViT-B/16 at 960) with seeded random weights, since its speed does not depend on them
(its tokenizer then knows only the bench's phrases); `--text-detector` times a named or saved one
instead. Then each detector's pass is spread over tracked frames as the node spreads it
(text_slice_ms after each frame): the frame period with it beside the period without.
"""
from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from sam2_ros.core.model import LoadedModel
from sam2_ros.core.networks.registry import BUILDING
from sam2_ros.core.prompts import Prompt
from sam2_ros.core.settings import TextParams
from sam2_ros.core.text import DetectorSpec, TextDetector, load_detector
from sam2_ros.core.tracker import StreamingTracker
from sam2_ros.tools.measure import camera_frame, median_ms
from sam2_ros.tools.vocabularies import bert_tokenizer, clip_tokenizer

PHRASES = ("person", "rocket")
THRESHOLDS = (0.35, 0.25)  # the node's defaults: text_box_threshold, text_threshold
FILLER = "[unused{}]"


def save_grounding_dino_tiny(folder: Path) -> Path:
    """IDEA-Research/grounding-dino-tiny's architecture (transformers' default config), random weights."""
    from transformers import (
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
    )

    config = GroundingDinoConfig()
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", *PHRASES]
    words += [FILLER.format(i) for i in range(config.text_config.vocab_size - len(words))]
    torch.manual_seed(0)
    with BUILDING:  # no other network is being built meanwhile (registry.BUILDING)
        network = GroundingDinoForObjectDetection(config)
    network.eval().save_pretrained(folder)
    GroundingDinoProcessor(image_processor=GroundingDinoImageProcessor(),
                           tokenizer=bert_tokenizer(words)).save_pretrained(folder)
    return folder


def save_owlv2_base(folder: Path) -> Path:
    """google/owlv2-base-patch16-ensemble's architecture (ViT-B/16 at 960), random weights."""
    from transformers import (
        Owlv2Config,
        Owlv2ForObjectDetection,
        Owlv2ImageProcessor,
        Owlv2Processor,
    )

    config = Owlv2Config(vision_config={"image_size": 960})
    vocab = {f"{word}</w>": i for i, word in enumerate(PHRASES)}
    vocab.update({letter: len(vocab) + i for i, letter in enumerate("abcdefghijklmnopqrstuvwxyz")})
    vocab.update({FILLER.format(i): i for i in range(len(vocab), config.text_config.vocab_size - 2)})
    vocab.update({"<|startoftext|>": config.text_config.bos_token_id, "<|endoftext|>": config.text_config.eos_token_id})
    torch.manual_seed(0)
    with BUILDING:  # no other network is being built meanwhile (registry.BUILDING)
        network = Owlv2ForObjectDetection(config)
    network.eval().save_pretrained(folder)
    tokenizer = clip_tokenizer(vocab, [], config.text_config.max_position_embeddings)
    Owlv2Processor(image_processor=Owlv2ImageProcessor(), tokenizer=tokenizer).save_pretrained(folder)
    return folder


ARCHITECTURES: dict[str, Callable[[Path], Path]] = {"grounding_dino_tiny": save_grounding_dino_tiny,
                                                    "owlv2_base": save_owlv2_base}


def bench_text(model: LoadedModel, named: list[str], size: int, frames: int, sync: Callable[[], None]) -> dict:
    """text_detector_ms_<detector>_<size>; the frame period alone, and with each detector's pass spread over it."""
    image = camera_frame()
    results: dict = {"text_phrases": " . ".join(PHRASES), "text_random_weights": not named,
                     "text_slice_ms": TextParams().slice_ms}
    tracker = Tracked(model, image, sync)
    results["text_track_ms_per_frame"] = statistics.median(tracker.frame() for _ in range(frames))
    with tempfile.TemporaryDirectory() as scratch:
        sources = named or [str(save(Path(scratch) / name)) for name, save in ARCHITECTURES.items()]
        for label, source in zip(named or list(ARCHITECTURES), sources):
            detector = load_detector(DetectorSpec(source, str(model.device), size))
            tag = f"{Path(label).name}_{detector.input_size}"
            with torch.inference_mode():
                results[f"text_detector_ms_{tag}"] = median_ms(
                    lambda d=detector: d.detect(image, PHRASES, *THRESHOLDS), 2, sync)
            results.update({f"{key}_{tag}": value for key, value in tracker.beside(detector).items()})
            del detector
    return results


class Tracked:
    """SAM 2 tracking one object over a panning photo, a frame at a time."""

    def __init__(self, model: LoadedModel, image: np.ndarray, sync: Callable[[], None]):
        self.image, self.sync, self.t = image, sync, 0
        self.tracker = StreamingTracker(model)
        self.tracker.track(image)
        h, w = image.shape[:2]
        self.tracker.add_prompt(Prompt(box=np.array([w * 0.3, h * 0.2, w * 0.6, h * 0.9], np.float32)))

    def frame(self) -> float:
        """Track the next frame; its ms."""
        self.t += 1
        start = time.perf_counter()
        self.tracker.track(np.roll(self.image, 4 * self.t, axis=1))
        self.sync()
        return (time.perf_counter() - start) * 1e3

    def beside(self, detector: TextDetector) -> dict:
        """One detector pass stepped after each frame, as the node steps it: each frame's period with its slice."""
        run = detector.start(self.image, PHRASES, *THRESHOLDS)
        periods = []
        while True:
            start = time.perf_counter()
            self.frame()
            done = run.step(TextParams().slice_ms / 1e3)
            self.sync()
            periods.append((time.perf_counter() - start) * 1e3)
            if done:
                break
        run.result()
        return {"text_frame_period_ms_while": statistics.median(periods),
                "text_frame_period_ms_max_while": max(periods), "text_pass_frames": len(periods),
                "text_pass_ms_sliced": run.ms}
