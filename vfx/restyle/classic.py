"""Classic restyle backend: OpenCV looks, temporally stabilised, composited under the subject."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from vfx.errors import VfxError
from vfx.frames import FrameBatch, ShotState, Step
from vfx.parallel import map_frames
from vfx.restyle.composite import composite
from vfx.restyle.styles import ColourTransfer, Style, frame_lab_stats, style_named


@dataclass
class RestyleState:
    previous_source: np.ndarray | None = None  # blurred grey of the last source frame
    previous_output: np.ndarray | None = None  # last restyled frame, before compositing
    lab_mean: np.ndarray | None = None
    lab_std: np.ndarray | None = None


class ClassicRestyle(Step):
    """Restyles each frame's surroundings and keeps the subject where ``batch.matte`` is 1.

    Painterly filters react to sensor noise, so a restyled pixel is only allowed to change as
    much as its source pixel did: where the source holds still, the previous restyled pixel is
    kept; where it moves, the new one shows through. That keeps flicker at the source's level.
    """

    name = "restyle"

    def __init__(self, style: str | None = None, style_image: np.ndarray | None = None,
                 stability: float = 6.0, stats_smoothing: float = 0.05):
        if style is None and style_image is None:
            raise VfxError("restyle needs --style NAME or --style-image PATH")
        self.style: Style | None = style_named(style) if style else None
        self.transfer = ColourTransfer(style_image) if style_image is not None else None
        self.stability = stability  # source change (grey levels) at which the new frame fully shows
        self.stats_smoothing = stats_smoothing

    def __call__(self, batch: FrameBatch, shot: ShotState) -> FrameBatch:
        state = shot.steps.setdefault(self.name, RestyleState())
        sources = list(batch.originals)
        styled = map_frames(self.style, list(batch.frames)) if self.style else [f.copy() for f in batch.frames]
        if self.transfer is not None:
            styled = self._transfer_colours(styled, sources, state)
        greys = map_frames(_blurred_grey, sources)
        stable = []
        for frame, grey in zip(styled, greys):
            stable.append(self._stabilise(frame, grey, state))
        restyled = np.stack(stable)
        matte = batch.matte
        batch.source = batch.originals
        batch.frames = composite(batch.frames, restyled, matte) if matte is not None else restyled
        return batch

    def _transfer_colours(self, styled: list[np.ndarray], sources: list[np.ndarray], state: RestyleState) -> list[np.ndarray]:
        # Shot-level source statistics (slow moving average): per-frame statistics would pump.
        out = []
        for frame, source in zip(styled, sources):
            mean, std = frame_lab_stats(source)
            if state.lab_mean is None:
                state.lab_mean, state.lab_std = mean, std
            else:
                k = self.stats_smoothing
                state.lab_mean = (1 - k) * state.lab_mean + k * mean
                state.lab_std = (1 - k) * state.lab_std + k * std
            out.append((state.lab_mean, state.lab_std))
        return map_frames(lambda item: self.transfer(item[0], *item[1]), list(zip(styled, out)))

    def _stabilise(self, styled: np.ndarray, grey: np.ndarray, state: RestyleState) -> np.ndarray:
        if state.previous_output is None or state.previous_output.shape != styled.shape:
            state.previous_source, state.previous_output = grey, styled
            return styled
        keep = cv2.exp(cv2.absdiff(grey, state.previous_source) * (-1.0 / self.stability))
        out = cv2.blendLinear(state.previous_output, styled, keep, 1.0 - keep)
        state.previous_source, state.previous_output = grey, out
        return out


def _blurred_grey(rgb: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), (5, 5), 0).astype(np.float32)
