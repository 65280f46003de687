"""Person matte with mediapipe's selfie segmentation (weights bundled in the wheel)."""
from __future__ import annotations

import threading

import numpy as np

from vfx.frames import FrameBatch, ShotState, Step
from vfx.matte import feather, is_cut, keep_main_regions, smooth_probability, thumbnail_grey
from vfx.parallel import map_frames


class PersonSegmenter(Step):
    """Sets ``batch.matte`` to where people are, smoothed over time and feathered outward."""

    name = "segment"

    def __init__(self, feather_px: float = 6.0, smoothing: float = 0.6, threshold: float = 0.5, tile_px: int = 256):
        self.tile_px = tile_px
        self.feather_px = feather_px
        self.smoothing = smoothing
        self.threshold = threshold
        self._local = threading.local()  # a mediapipe graph is not thread-safe: one per thread

    def _model(self, selection: int):
        models = getattr(self._local, "models", None)
        if models is None:
            import mediapipe as mp

            models = self._local.models = {
                s: mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=s) for s in (0, 1)
            }
        return models[selection]

    def probabilities(self, frame: np.ndarray) -> np.ndarray:
        """Whole frame (people filling the frame) and overlapping tiles (people far away), max-combined.

        The model sees its input at 256x256 (general) / 256x144 (landscape); a person 60 px tall
        in a 768x576 drone or CCTV frame shrinks to a few pixels there and is missed, but fills
        a good part of a 256 px tile at native resolution.
        """
        probability = self._model(1).process(frame).segmentation_mask.astype(np.float32)
        h, w = probability.shape
        tile = self.tile_px
        if tile <= 0 or min(h, w) < 1.25 * tile:
            return probability
        for y, x in _tile_origins(h, w, tile):
            crop = np.ascontiguousarray(frame[y:y + tile, x:x + tile])
            region = probability[y:y + tile, x:x + tile]
            np.maximum(region, self._model(0).process(crop).segmentation_mask, out=region)
        return probability

    def __call__(self, batch: FrameBatch, shot: ShotState) -> FrameBatch:
        raw = map_frames(self.probabilities, list(batch.originals))
        previous, previous_thumb = shot.steps.get(self.name, (None, None))
        thumbs = map_frames(thumbnail_grey, list(batch.originals))
        smoothed = []
        for probability, thumb in zip(raw, thumbs):
            if is_cut(previous_thumb, thumb):
                previous = None  # a new shot: yesterday's matte must not bleed into it
            previous = smooth_probability(previous, probability, self.smoothing)
            previous_thumb = thumb
            smoothed.append(previous)
        mattes = map_frames(self._final_matte, smoothed)
        shot.steps[self.name] = (previous, previous_thumb)
        batch.matte = np.stack(mattes)
        return batch

    def _final_matte(self, probability: np.ndarray) -> np.ndarray:
        return feather(keep_main_regions(probability > self.threshold, min_fraction=0.0), self.feather_px)


def _tile_origins(height: int, width: int, tile: int, overlap: float = 0.25) -> list[tuple[int, int]]:
    stride = int(tile * (1 - overlap))
    ys = list(range(0, height - tile + 1, stride))
    xs = list(range(0, width - tile + 1, stride))
    if ys[-1] + tile < height:
        ys.append(height - tile)
    if xs[-1] + tile < width:
        xs.append(width - tile)
    return [(y, x) for y in ys for x in xs]
