"""The models suite's tracking run: prompts on the first frame, then masks as Meta's live predictor gives them."""
import numpy as np
import pytest

from conftest import SMALL
from sam2_ros.core.prompts import Prompt
from sam2_ros.tools.meta_live import MetaLiveStream
from sam2_ros.tools.models_bench import FULL_MEMORY, key, track_run
from sam2_ros.tools.scenes import object_box, pan_clip


def test_a_timed_run_tracks_its_first_frame_prompt_as_metas_predictor_does(small_model, checkpoint):
    images, truths = pan_clip(FULL_MEMORY + 2)
    prompt = Prompt(object_id=1, box=object_box(truths[0]))
    sizes = iter(range(100, 200, 10))  # resident MB after each frame: 10 MB more per frame
    ms, growth, masks = track_run(small_model, images, [prompt], lambda: None, lambda: float(next(sizes)), "test")
    assert ms > 0 and growth == pytest.approx(10.0), "growth per frame over the frames after the memory is full"

    meta = MetaLiveStream(checkpoint, images, SMALL)
    expected = [meta.add_prompt(0, prompt)[1]] + [meta.track(t)[1] for t in range(1, len(images))]
    assert len(masks) == len(images)
    for t, (ours, theirs) in enumerate(zip(masks, expected)):
        # the timed run steps objects batched (the node's path): agreement as the tracker's batched tests ask
        assert np.mean(ours == theirs) >= 0.9999, f"frame {t}: {np.count_nonzero(ours != theirs)} pixels differ"


def test_keys_name_the_model_and_its_input_size():
    assert key("sam2.1_hiera_tiny", 512) == "sam2.1_hiera_tiny_512"
