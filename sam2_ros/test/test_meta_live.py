"""Meta's video predictor stepped live: what one propagation over the whole clip gives, frame by frame."""
import numpy as np

from conftest import SMALL
from sam2_ros.core.prompts import Prompt
from sam2_ros.tools.meta_live import MetaLiveStream
from sam2_ros.tools.scenes import object_box, pan_clip

FRAMES = 5


def test_stepping_one_frame_at_a_time_equals_metas_own_propagation_after_a_first_frame_prompt(checkpoint):
    """With every prompt on frame 0 nothing can reach back, so live stepping must equal propagate_in_video."""
    images, truths = pan_clip(FRAMES)
    prompt = Prompt(object_id=1, box=object_box(truths[0]))
    live = MetaLiveStream(checkpoint, images, SMALL)
    stepped = {0: live.add_prompt(0, prompt), **{t: live.track(t) for t in range(1, FRAMES)}}

    whole = MetaLiveStream(checkpoint, images, SMALL)  # the same inputs, run as Meta's examples run a video
    whole.add_prompt(0, prompt)
    propagated = {t: (logits[0, 0] > 0).numpy() for t, ids, logits in whole.predictor.propagate_in_video(whole.state)}
    assert sorted(propagated) == list(range(FRAMES))
    for t in range(FRAMES):
        assert list(stepped[t]) == [1], f"frame {t}"
        assert np.array_equal(stepped[t][1], propagated[t]), f"frame {t}: live stepping differs from propagation"
    assert stepped[FRAMES - 1][1].any()


def test_a_removed_object_is_no_longer_tracked(checkpoint):
    images, truths = pan_clip(2)
    live = MetaLiveStream(checkpoint, images, SMALL)
    live.add_prompt(0, Prompt(object_id=3, box=object_box(truths[0])))
    live.remove(3)
    assert live.track(1) == {}
