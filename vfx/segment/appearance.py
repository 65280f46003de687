"""What a prompted subject looks like on its key frames, to notice when it is gone and find it again.

A hue-saturation histogram of the subject on the key frame(s). In any later frame,
``P(subject | colour) = P(colour | subject) P(subject) / P(colour)`` with ``P(colour)`` from that
frame's own histogram (so it holds in a new shot too) says how much a mask still looks like the
subject (a mask that slid onto an occluder does not) and where the subject may be again.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

BINS = (30, 32)
RANGES = [0, 180, 0, 256]


@dataclass
class Appearance:
    subject: np.ndarray  # float32 [30, 32] hue-saturation histogram, normalised to sum 1
    area: float  # subject pixels on the key frame (work size)
    keys: int = 1

    @classmethod
    def from_key_frame(cls, rgb: np.ndarray, mask: np.ndarray) -> Appearance:
        hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
        return cls(_histogram(hsv, mask), float(mask.sum()))

    def add(self, other: Appearance) -> None:
        """Another key frame of the same subject: the model is the average of them."""
        n = self.keys
        self.subject = (self.subject * n + other.subject) / (n + 1)
        self.area = (self.area * n + other.area) / (n + 1)
        self.keys = n + 1

    def likelihood(self, rgb: np.ndarray) -> np.ndarray:
        """Per pixel P(subject | colour) in [0, 1], against this frame's colours."""
        hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
        everything = _histogram(hsv, np.ones(hsv.shape[:2], bool))
        prior = min(0.5, self.area / float(hsv.shape[0] * hsv.shape[1]))
        ratio = np.clip(self.subject * prior / (everything + 1e-6), 0.0, 1.0)
        return cv2.calcBackProject([hsv], [0, 1], ratio.astype(np.float32), RANGES, 1.0)

    def score(self, rgb: np.ndarray, mask: np.ndarray) -> float:
        """Mean P(subject | colour) over a mask: how much it still looks like the subject."""
        return float(self.likelihood(rgb)[mask].mean()) if mask.any() else 0.0

    def candidates(self, rgb: np.ndarray, threshold: float = 0.5) -> list[tuple[tuple[int, int, int, int], float]]:
        """Boxes (x, y, w, h) of subject-coloured regions about the subject's size, best first."""
        likely = cv2.GaussianBlur(self.likelihood(rgb), (0, 0), 3)
        count, labels, stats, _ = cv2.connectedComponentsWithStats((likely > threshold).astype(np.uint8), connectivity=8)
        found = []
        for label in range(1, count):
            x, y, w, h, area = (int(v) for v in stats[label])
            if 0.3 * self.area <= area <= 3.0 * self.area:
                found.append(((x, y, w, h), float(likely[labels == label].mean())))
        return sorted(found, key=lambda c: -c[1])


def _histogram(hsv: np.ndarray, mask: np.ndarray) -> np.ndarray:
    hist = cv2.calcHist([hsv], [0, 1], mask.astype(np.uint8), list(BINS), RANGES).astype(np.float32)
    return hist / max(float(hist.sum()), 1.0)
