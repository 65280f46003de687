"""Promptable subject matte: GrabCut on a key frame, tracked both ways with DIS optical flow.

The key frame's mask is warped frame to frame by dense flow (so it follows camera motion) and
re-refined by GrabCut in a narrow band around the warped edge, so it does not drift off the
subject. Frames before the key frame are tracked backward in a first pass whose masks wait in
a temporary file, which keeps memory flat however long the shot is.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

import cv2
import numpy as np

from vfx.errors import VfxError
from vfx.frames import FrameBatch, FrameSource, ShotState, Step, require_frames
from vfx.matte import feather, fill_holes, is_cut, resize_matte, thumbnail_grey
from vfx.parallel import map_frames
from vfx.segment.prompts import SubjectPrompt
from vfx.segment.spool import Spool

log = logging.getLogger(__name__)



@dataclass
class TrackState:
    """What the tracker carries from one batch of a shot to the next."""

    key_frame: int
    scale: float
    previous_gray: np.ndarray | None = None
    previous_mask: np.ndarray | None = None
    previous_thumb: np.ndarray | None = None
    lost_at: int | None = None  # frame of a shot cut after which the subject is no longer tracked
    backward: Spool | None = field(default=None, repr=False)  # masks of the frames before the key frame
    first_frame: int = 0

    def backward_mask(self, number: int) -> np.ndarray:
        return self.backward.get(number - self.first_frame).astype(bool)


class PromptSegmenter(Step):
    name = "segment"

    def __init__(self, prompt: SubjectPrompt, feather_px: float = 4.0, work_size: int = 512,
                 refine_iterations: int = 2):
        self.prompt = prompt
        self.feather_px = feather_px
        self.work_size = work_size
        self.refine_iterations = refine_iterations
        self._local = threading.local()

    # -- shot lifecycle -------------------------------------------------------------------
    def prepare(self, shot: ShotState, frames: FrameSource) -> None:
        """Find the subject on the key frame and track it back to the shot's first frame."""
        key = self.prompt.key_frame if self.prompt.key_frame is not None else shot.first_frame
        self.prompt.check_inside(shot.width, shot.height, shot.first_frame, shot.last_frame)
        scale = min(1.0, self.work_size / max(shot.width, shot.height))
        state = TrackState(key_frame=key, scale=scale)
        shot.steps[self.name] = state
        if key == shot.first_frame:
            return
        frames = require_frames(frames, self.name, key)
        first = shot.first_frame
        frames_spool: Spool | None = None
        for number, rgb in frames(first, key):
            small = self._work_image(rgb, scale)
            if frames_spool is None:
                frames_spool = Spool(small.shape, prefix="vfx-track-")
            frames_spool.put(number - first, small)
        try:
            self._track_backward(frames_spool, key - first, state, first, scale)
        finally:
            frames_spool.close()

    def _track_backward(self, frames: Spool, key_index: int, state: TrackState, first: int, scale: float) -> None:
        key_rgb = frames.get(key_index)
        seed_frame(first + key_index)
        mask = self._key_mask(key_rgb, scale)
        state.first_frame = first
        state.backward = Spool(mask.shape, prefix="vfx-track-")
        state.backward.put(key_index, mask)
        later_gray = cv2.cvtColor(key_rgb, cv2.COLOR_RGB2GRAY)
        later_thumb = thumbnail_grey(key_rgb)
        for i in range(key_index - 1, -1, -1):
            rgb = frames.get(i)
            gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
            thumb = thumbnail_grey(rgb)
            seed_frame(first + i)
            if mask.any() and is_cut(later_thumb, thumb):
                log.warning("subject not tracked before frame %d: shot cut", first + i + 1)
                mask = np.zeros_like(mask)
            elif mask.any():
                mask = self._propagate(mask, self._flows(gray, later_gray), rgb)
            state.backward.put(i, mask)
            later_gray, later_thumb = gray, thumb

    def finish(self, shot: ShotState) -> None:
        state = shot.steps.get(self.name)
        if isinstance(state, TrackState) and state.backward is not None:
            state.backward.close()

    # -- per batch ------------------------------------------------------------------------
    def __call__(self, batch: FrameBatch, shot: ShotState) -> FrameBatch:
        state: TrackState = shot.steps[self.name]
        smalls = map_frames(lambda rgb: self._work_image(rgb, state.scale), list(batch.originals))
        grays = map_frames(lambda rgb: cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), smalls)
        earlier = [state.previous_gray] + grays[:-1]
        numbers = batch.indices.tolist()
        flows = map_frames(
            lambda i: self._flows(grays[i], earlier[i]) if numbers[i] > state.key_frame and earlier[i] is not None else None,
            list(range(len(batch))),
        )
        thumbs = map_frames(thumbnail_grey, smalls)
        masks = []
        for i, number in enumerate(numbers):
            seed_frame(number)
            if number < state.key_frame:
                mask = state.backward_mask(number)
            elif number == state.key_frame:
                mask = self._key_mask(smalls[i], state.scale)
            elif state.lost_at is None and is_cut(state.previous_thumb, thumbs[i]):
                state.lost_at = number
                log.warning("subject not tracked from frame %d on: shot cut", number)
                mask = np.zeros_like(state.previous_mask)
            elif state.lost_at is not None:
                mask = np.zeros_like(state.previous_mask)
            else:
                mask = self._propagate(state.previous_mask, flows[i], smalls[i])
            masks.append(mask)
            state.previous_mask = mask
            state.previous_thumb = thumbs[i]
        state.previous_gray = grays[-1]
        width, height = batch.size
        batch.matte = np.stack(map_frames(lambda m: self._full_matte(m, width, height), masks))
        return batch

    # -- pieces ---------------------------------------------------------------------------
    @staticmethod
    def _work_image(rgb: np.ndarray, scale: float) -> np.ndarray:
        if scale == 1.0:
            return np.ascontiguousarray(rgb)
        return cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)

    def _full_matte(self, mask: np.ndarray, width: int, height: int) -> np.ndarray:
        hard = resize_matte(mask.astype(np.float32), width, height) > 0.5
        return feather(hard, self.feather_px)

    def _flows(self, gray: np.ndarray, other_gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Dense flow both ways between a frame and its tracked neighbour (DIS, one per thread)."""
        dis = getattr(self._local, "dis", None)
        if dis is None:
            dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
            self._local.dis = dis
        return dis.calc(gray, other_gray, None), dis.calc(other_gray, gray, None)

    def _propagate(self, mask: np.ndarray, flows: tuple[np.ndarray, np.ndarray], rgb: np.ndarray) -> np.ndarray:
        """Carry the neighbour's mask into this frame, trusting only flow that agrees both ways.

        Background uncovered behind a moving subject gets flow "from the subject" by smoothness;
        there the forward and backward flows disagree, and those pixels are left to GrabCut
        instead of being glued to the subject (which made the matte smear a trail).
        """
        back, forward = flows
        h, w = mask.shape
        grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        map_x, map_y = grid_x + back[..., 0], grid_y + back[..., 1]
        warped = cv2.remap(mask.astype(np.float32), map_x, map_y, cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0) > 0.5
        if not warped.any():
            return warped  # the subject has left the frame
        forward_there = cv2.remap(forward, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        disagreement = np.linalg.norm(back + forward_there, axis=-1)
        reliable = disagreement < 1.0 + 0.1 * np.linalg.norm(back, axis=-1)
        return self._refine(rgb, warped, reliable)

    def _refine(self, rgb: np.ndarray, prior: np.ndarray, reliable: np.ndarray) -> np.ndarray:
        """GrabCut in a band around the prior's edge; the prior's reliable core and far outside are fixed."""
        area = float(prior.sum())
        band = int(np.clip(0.06 * np.sqrt(area), 3, 20))
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1))
        prior_u8 = prior.astype(np.uint8)
        grown = cv2.dilate(prior_u8, kernel).astype(bool)
        core = cv2.erode((prior & reliable).astype(np.uint8), kernel).astype(bool)
        x0, y0, x1, y1 = _padded_box(grown, 3 * band, prior.shape)
        labels = np.full((y1 - y0, x1 - x0), cv2.GC_BGD, dtype=np.uint8)
        sl = (slice(y0, y1), slice(x0, x1))
        labels[grown[sl]] = cv2.GC_PR_BGD
        labels[(prior & reliable)[sl]] = cv2.GC_PR_FGD
        labels[core[sl]] = cv2.GC_FGD
        refined = prior.copy()
        if (labels == cv2.GC_BGD).any() and (labels == cv2.GC_FGD).any():
            roi = np.ascontiguousarray(rgb[sl])
            cv2.grabCut(roi, labels, None, np.zeros((1, 65)), np.zeros((1, 65)), self.refine_iterations, cv2.GC_INIT_WITH_MASK)
            refined[sl] = (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)
        return _regions_touching(fill_holes(refined), core if core.any() else prior)

    def _key_mask(self, rgb: np.ndarray, scale: float) -> np.ndarray:
        """GrabCut from the user's box and/or clicks on the key frame."""
        h, w = rgb.shape[:2]
        labels = np.full((h, w), cv2.GC_BGD if self.prompt.box is not None else cv2.GC_PR_BGD, dtype=np.uint8)
        radius = max(2, int(0.02 * min(h, w)))
        if self.prompt.box is not None:
            bx, by, bw, bh = (v * scale for v in self.prompt.box)
            x0, y0 = int(bx), int(by)
            x1, y1 = int(np.ceil(bx + bw)), int(np.ceil(by + bh))
            labels[y0:y1, x0:x1] = cv2.GC_PR_FGD
        for px, py in self.prompt.points:
            cv2.circle(labels, (int(px * scale), int(py * scale)), int(radius * 4), int(cv2.GC_PR_FGD), -1)
        for px, py in self.prompt.points:
            cv2.circle(labels, (int(px * scale), int(py * scale)), radius, int(cv2.GC_FGD), -1)
        for px, py in self.prompt.negative_points:
            cv2.circle(labels, (int(px * scale), int(py * scale)), radius, int(cv2.GC_BGD), -1)
        if not (labels == cv2.GC_BGD).any() and not (labels == cv2.GC_PR_BGD).any():
            raise VfxError("--subject: the box covers the whole frame; there is no background to learn from")
        cv2.grabCut(np.ascontiguousarray(rgb), labels, None, np.zeros((1, 65)), np.zeros((1, 65)), 5, cv2.GC_INIT_WITH_MASK)
        mask = (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)
        seeds = np.zeros_like(mask)
        for px, py in self.prompt.points:
            seeds[min(h - 1, int(py * scale)), min(w - 1, int(px * scale))] = True
        if not seeds.any():
            seeds = mask
        mask = _regions_touching(fill_holes(mask), seeds)
        if not mask.any():
            raise VfxError("--subject: nothing distinct from its surroundings was found at the prompt on the key frame")
        return mask


def seed_frame(number: int) -> None:
    """Seed this thread's OpenCV RNG (GrabCut's k-means start) from the frame number, so a frame's
    matte depends on the shot alone, not on what the thread ran before: service workers reuse
    threads, and a resumed tracking pass starts mid-shot, yet both must match `vfx run`."""
    cv2.setRNGSeed(number + 1)


def _padded_box(mask: np.ndarray, pad: int, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    h, w = shape
    return max(0, xs.min() - pad), max(0, ys.min() - pad), min(w, xs.max() + pad + 1), min(h, ys.max() + pad + 1)


def _regions_touching(mask: np.ndarray, anchor: np.ndarray) -> np.ndarray:
    """Keep the connected regions of ``mask`` that overlap ``anchor``; drop stray blobs."""
    count, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    if count <= 2:
        return mask
    keep = np.unique(labels[anchor & mask])
    keep = keep[keep > 0]
    if keep.size == 0:
        return mask
    return np.isin(labels, keep)
