"""Person matte with mediapipe's selfie segmentation (weights bundled in the wheel)."""
from __future__ import annotations

import threading

import numpy as np

from vfx.frames import FrameBatch, ShotState
from vfx.matte import feather, keep_main_regions, smooth_probability
from vfx.parallel import map_frames


class PersonSegmenter:
    """Sets ``batch.matte`` to where people are, smoothed over time and feathered outward."""

    name = "segment"

    def __init__(self, feather_px: float = 6.0, smoothing: float = 0.6, threshold: float = 0.5):
        self.feather_px = feather_px
        self.smoothing = smoothing
        self.threshold = threshold
        self._local = threading.local()  # a mediapipe graph is not thread-safe: one per thread

    def _model(self):
        model = getattr(self._local, "model", None)
        if model is None:
            import mediapipe as mp

            # model 1 ("landscape") is the one trained on full bodies at a distance
            model = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=1)
            self._local.model = model
        return model

    def probabilities(self, frame: np.ndarray) -> np.ndarray:
        return self._model().process(frame).segmentation_mask.astype(np.float32)

    def __call__(self, batch: FrameBatch, shot: ShotState) -> FrameBatch:
        raw = map_frames(self.probabilities, list(batch.originals))
        previous = shot.steps.get(self.name)
        smoothed = []
        for probability in raw:
            previous = smooth_probability(previous, probability, self.smoothing)
            smoothed.append(previous)
        mattes = map_frames(self._final_matte, smoothed)
        shot.steps[self.name] = previous
        batch.matte = np.stack(mattes)
        return batch

    def _final_matte(self, probability: np.ndarray) -> np.ndarray:
        return feather(keep_main_regions(probability > self.threshold, min_fraction=0.0), self.feather_px)
