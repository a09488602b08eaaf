"""What the SAM 2-family tests give each family's reference and ours: weights, photos' prompts, a clip's script."""
from pathlib import Path

import numpy as np
import torch

from sam2_ros.core.model import write_random_checkpoint
from sam2_ros.core.prompts import Prompt
from sam2_ros.tools.scenes import object_box

FRAMES = 30
OBJECT_PRESENT = 4.0  # logit of the object-presence head's last bias


def write_present_checkpoint(path: Path, name: str, seed: int = 0) -> Path:
    """Seeded random weights, but for one bias: objects are predicted present, so a clip's masks
    are the decoder's masks and not SAM 2's fill for an absent object.
    """
    path = write_random_checkpoint(path, name=name, seed=seed)
    content = torch.load(path, weights_only=True)
    content["model"]["sam_mask_decoder.pred_obj_score_head.layers.2.bias"].fill_(OBJECT_PRESENT)
    torch.save(content, path)
    return path


def image_prompts(image) -> list[tuple[Prompt, dict]]:
    """Ours and a reference image predictor's arguments for: a click, a box, clicks of both kinds with a box."""
    h, w = image.shape[:2]
    click = [[w * 0.45, h * 0.55]]
    box = [w * 0.2, h * 0.15, w * 0.7, h * 0.8]
    mixed, labels = [[w * 0.5, h * 0.5], [w * 0.25, h * 0.3]], [1, 0]
    return [
        (Prompt(object_id=1, points=np.array(click), point_labels=np.array([1])),
         {"point_coords": click, "point_labels": [1], "multimask_output": True}),
        (Prompt(object_id=1, box=np.array(box, np.float32)), {"box": box, "multimask_output": False}),
        (Prompt(object_id=1, points=np.array(mixed), point_labels=np.array(labels), box=np.array(box, np.float32)),
         {"point_coords": mixed, "point_labels": labels, "box": box, "multimask_output": False}),
    ]


def clip_script(truths) -> dict:
    """Object 1 from a box on the first frame, object 2 from a click on frame 10, object 1 corrected on 15."""
    h, w = truths[0].shape
    return {0: [("prompt", Prompt(object_id=1, box=object_box(truths[0])))],
            10: [("prompt", Prompt(object_id=2, points=np.array([[w * 0.8, h * 0.25]]), point_labels=np.array([1])))],
            15: [("prompt", Prompt(object_id=1, points=np.array([[*object_box(truths[15])[:2] + 40]]),
                                   point_labels=np.array([1])))]}


def reference_kwargs(prompt: Prompt) -> dict:
    """A prompt as a reference video predictor's add_new_points_or_box takes it."""
    has_points = prompt.points is not None and len(prompt.points) > 0
    return {"points": prompt.points.tolist() if has_points else None,
            "labels": prompt.point_labels.tolist() if has_points else None,
            "box": None if prompt.box is None else prompt.box.tolist()}


def weights_digest(state: dict) -> str:
    """Return a digest of the weights: a recorded reference says which weights it was recorded on."""
    import hashlib
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(state[key].float().numpy().tobytes())
    return digest.hexdigest()
