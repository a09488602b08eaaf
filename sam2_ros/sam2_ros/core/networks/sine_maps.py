"""SAM 2's sine position maps, handed out as views of one cached map instead of a copy per call.

Meta's `PositionEmbeddingSine` caches each map but copies it out for every image and every
memory frame: at input size 1024 that is 67 MB for the finest level alone, on every frame,
and a copy kept with every memory frame. Nothing writes into these maps, so one contiguous
map (the layout the copy had) serves every caller with the same numbers.
"""
from __future__ import annotations

import torch
from sam2.modeling.position_encoding import PositionEmbeddingSine


class SharedSine(PositionEmbeddingSine):
    """PositionEmbeddingSine whose maps are views of its cache (batch expanded, not repeated)."""

    @torch.no_grad()
    def _pe(self, B: int, device: torch.device, *cache_key: int) -> torch.Tensor:
        if cache_key not in self.cache:
            super()._pe(1, device, *cache_key)
            self.cache[cache_key] = self.cache[cache_key].contiguous()
        return self.cache[cache_key].to(device)[None].expand(B, -1, -1, -1)
