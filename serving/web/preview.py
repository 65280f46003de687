"""One-frame previews for the page, through the same builders a render uses: the subject matte
(the configured segmenter on the prompts of that frame), style thumbnails and a before/after."""
from __future__ import annotations

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from vfx.config import RestyleConfig, SegmentConfig
from vfx.errors import VfxError
from vfx.frames import FrameBatch, ShotState
from vfx.restyle import STYLE_DESCRIPTIONS, STYLES, build_restyler
from vfx.segment import build_segmenter

THUMB_WIDTH = 256
OVERLAY_RGB = np.array([255, 60, 200], np.float32)


class SubjectPrompts(BaseModel):
    """One subject's prompts on one key frame, as the page collects them (source pixels)."""
    model_config = ConfigDict(extra="forbid")
    frame: int = Field(ge=0)
    box: tuple[float, float, float, float] | None = None
    points: list[tuple[float, float]] = Field(default_factory=list, max_length=64)
    negatives: list[tuple[float, float]] = Field(default_factory=list, max_length=64)

    def subject_texts(self) -> list[str]:
        """The ``--subject`` strings of vfx/segment/prompts.py that say the same."""
        texts = []
        if self.box is not None:
            texts.append("box:" + ",".join(f"{v:.0f}" for v in self.box) + f"@{self.frame}")
        texts += [f"point:{x:.0f},{y:.0f}@{self.frame}" for x, y in self.points]
        texts += [f"negpoint:{x:.0f},{y:.0f}@{self.frame}" for x, y in self.negatives]
        return texts


def one_frame(rgb: np.ndarray, number: int) -> tuple[FrameBatch, ShotState]:
    height, width = rgb.shape[:2]
    batch = FrameBatch(frames=rgb[None].copy(), indices=np.array([number]), timestamps=np.array([0.0]))
    return batch, ShotState(width=width, height=height, fps=0.0, first_frame=number, last_frame=number)


def subject_matte(rgb: np.ndarray, number: int, subjects: list[SubjectPrompts], backend: str = "auto") -> np.ndarray:
    """The union of the mattes of the subjects prompted on this frame, float32 [H, W] in [0, 1]."""
    matte = np.zeros(rgb.shape[:2], np.float32)
    for subject in subjects:
        if subject.frame != number or not subject.subject_texts():
            continue
        step = build_segmenter(SegmentConfig(subject=subject.subject_texts(), backend=backend), "cpu")
        batch, shot = one_frame(rgb, number)
        if hasattr(step, "prepare"):
            step.prepare(shot, lambda first, last: iter(()))  # the key frame is the shot's first: nothing to track back
        try:
            matte = np.maximum(matte, step(batch, shot).matte[0])
        finally:
            if hasattr(step, "finish"):
                step.finish(shot)
    return matte


def tracked_mattes(frames: list[np.ndarray], first: int, subjects: list[SubjectPrompts],
                   backend: str = "auto") -> np.ndarray:
    """Mattes [N, H, W] of ``frames`` (numbers ``first``...), each subject prompted on ``first``
    tracked forward through them by the segmenter a render uses."""
    mattes = np.zeros((len(frames), *frames[0].shape[:2]), np.float32)
    numbers = np.arange(first, first + len(frames))
    for subject in subjects:
        if subject.frame != first or not subject.subject_texts():
            continue
        step = build_segmenter(SegmentConfig(subject=subject.subject_texts(), backend=backend), "cpu")
        height, width = frames[0].shape[:2]
        shot = ShotState(width=width, height=height, fps=0.0, first_frame=first, last_frame=int(numbers[-1]))
        batch = FrameBatch(frames=np.stack(frames), indices=numbers, timestamps=np.zeros(len(frames)))
        if hasattr(step, "prepare"):
            step.prepare(shot, lambda a, b: iter(()))  # the key frame is the first: nothing to track back
        try:
            mattes = np.maximum(mattes, step(batch, shot).matte)
        finally:
            if hasattr(step, "finish"):
                step.finish(shot)
    return mattes


def overlay(rgb: np.ndarray, matte: np.ndarray) -> np.ndarray:
    """The frame with the subject tinted and outlined: what the page shows over the player."""
    alpha = matte[..., None] * 0.45
    tinted = rgb.astype(np.float32) * (1 - alpha) + OVERLAY_RGB * alpha
    edges = cv2.Canny((matte > 0.5).astype(np.uint8) * 255, 50, 150)
    edges = cv2.dilate(edges, np.ones((3, 3), np.uint8)) > 0
    tinted[edges] = (255, 255, 255)
    return tinted.astype(np.uint8)


def matte_png(matte: np.ndarray) -> bytes:
    """The matte as an RGBA PNG the page lays over the frame: tint where the subject is."""
    height, width = matte.shape
    rgba = np.zeros((height, width, 4), np.uint8)
    rgba[..., :3] = OVERLAY_RGB.astype(np.uint8)[::-1]  # cv2 writes BGR(A)
    rgba[..., 3] = np.clip(matte * 150, 0, 255).astype(np.uint8)
    edges = cv2.dilate(cv2.Canny((matte > 0.5).astype(np.uint8) * 255, 50, 150), np.ones((3, 3), np.uint8)) > 0
    rgba[edges] = (255, 255, 255, 255)
    return encode(".png", rgba)


def styles() -> list[dict[str, str]]:
    return [{"name": name, "description": STYLE_DESCRIPTIONS.get(name, "")} for name in STYLES]


def restyled(rgb: np.ndarray, number: int, style: str | None, style_image: str | None = None,
             matte: np.ndarray | None = None) -> np.ndarray:
    """One frame through the restyle step a render would build, the subject kept where ``matte`` is 1."""
    step = build_restyler(RestyleConfig(style=style, style_image=style_image), "cpu")
    if step is None:
        raise VfxError("choose a style or a painting")
    batch, shot = one_frame(rgb, number)
    batch.matte = None if matte is None else matte[None]
    return step(batch, shot).frames[0]


def thumbnail(rgb: np.ndarray) -> np.ndarray:
    height, width = rgb.shape[:2]
    scale = THUMB_WIDTH / width
    return cv2.resize(rgb, (THUMB_WIDTH, max(1, round(height * scale))), interpolation=cv2.INTER_AREA)


def encode(ext: str, image: np.ndarray, quality: int = 88) -> bytes:
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if ext == ".jpg" else []
    ok, data = cv2.imencode(ext, image, params)
    if not ok:
        raise VfxError(f"could not encode a {ext} image")
    return data.tobytes()
