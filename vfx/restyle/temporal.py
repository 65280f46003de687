"""Temporal consistency for painted video: dense flow, warping, agreement masks, and the flicker metric.

Stabilising: the previous painted frame is warped onto the current one along DIS flow computed on
the *source* frames, and kept where forward and backward flow agree and the source itself did not
change; elsewhere (disocclusions, new content, lighting) the fresh painting shows through. A cut
starts over.

Measuring (Lai et al. 2018, "Learning blind video temporal consistency"): warp output t-1 onto t
with flow from the source, mean absolute difference over pixels whose flows agree, averaged over
the clip, divided by the same number for the source itself.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import cv2
import numpy as np

from vfx.matte import is_cut, thumbnail_grey
from vfx.parallel import map_frames

_local = threading.local()


def dis_flow(grey: np.ndarray, other: np.ndarray, preset: int = cv2.DISOPTICAL_FLOW_PRESET_MEDIUM) -> np.ndarray:
    """Flow from ``grey`` to ``other``: ``grey[y, x]`` is seen at ``other[y + fy, x + fx]`` (one DIS per thread)."""
    cache = getattr(_local, "dis", None)
    if cache is None:
        cache = _local.dis = {}
    if preset not in cache:
        cache[preset] = cv2.DISOpticalFlow_create(preset)
    return cache[preset].calc(grey, other, None)


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Pull ``image`` (the other frame) into this frame along ``flow`` (this frame -> other)."""
    h, w = flow.shape[:2]
    grid = np.mgrid[0:h, 0:w].astype(np.float32)
    map_x, map_y = grid[1] + flow[..., 0], grid[0] + flow[..., 1]
    return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def flows_agree(flow_back: np.ndarray, flow_fwd: np.ndarray) -> np.ndarray:
    """bool [H, W]: following ``flow_back`` (t -> t-1) then ``flow_fwd`` (t-1 -> t) returns home.

    The tolerance grows with the motion (Sundaram et al. 2010, as used by Ruder et al. 2016);
    pixels whose flow leaves the frame are never trusted.
    """
    h, w = flow_back.shape[:2]
    there = warp(flow_fwd, flow_back)
    loop = flow_back + there
    tolerance = 0.01 * ((flow_back ** 2).sum(-1) + (there ** 2).sum(-1)) + 0.5
    grid_y, grid_x = np.mgrid[0:h, 0:w].astype(np.float32)
    x, y = grid_x + flow_back[..., 0], grid_y + flow_back[..., 1]
    inside = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
    return ((loop ** 2).sum(-1) <= tolerance) & inside


def grey(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


# -- stabilising -------------------------------------------------------------------------------
@dataclass
class TemporalState:
    grey: np.ndarray | None = None  # last source frame, grey, at the working size
    thumb: np.ndarray | None = None  # tiny grey copy, to tell a cut from motion
    painted: np.ndarray | None = None  # last stabilised painting, float32 [h, w, 3]
    resets: int = 0  # cuts (and the shot's start) where painting started over


@dataclass
class Motion:
    """What is known about one frame against the frame before it (computed in parallel per batch)."""

    grey: np.ndarray
    thumb: np.ndarray
    back: np.ndarray | None = None  # flow t -> t-1
    agree: np.ndarray | None = None  # bool: forward and backward flow agree
    residual: np.ndarray | None = None  # |source t - warped source t-1| in grey levels


def motions(sources: list[np.ndarray], previous_grey: np.ndarray | None, previous_thumb: np.ndarray | None,
            preset: int = cv2.DISOPTICAL_FLOW_PRESET_MEDIUM) -> list[Motion]:
    """Flow of every frame of a batch against its predecessor (the previous batch's last for the first)."""
    greys = [grey(s) for s in sources]
    thumbs = [thumbnail_grey(s) for s in sources]
    before = [previous_grey, *greys[:-1]]
    thumbs_before = [previous_thumb, *thumbs[:-1]]

    def one(i: int) -> Motion:
        motion = Motion(greys[i], thumbs[i])
        prior = before[i]
        if prior is None or prior.shape != greys[i].shape or is_cut(thumbs_before[i], thumbs[i]):
            return motion
        motion.back = dis_flow(greys[i], prior, preset)
        motion.agree = flows_agree(motion.back, dis_flow(prior, greys[i], preset))
        motion.residual = cv2.absdiff(greys[i], warp(prior, motion.back)).astype(np.float32)
        return motion

    return map_frames(one, list(range(len(sources))))


def stabilise(fresh: np.ndarray, motion: Motion, state: TemporalState, keep: float, change: float = 20.0) -> np.ndarray:
    """The painted frame to show: the warped previous painting where it is still valid, ``fresh`` elsewhere.

    ``keep`` is the warped painting's weight where flows agree and the source did not change;
    it fades with the motion-compensated source change (``change`` grey levels: 1/e).
    """
    if motion.back is None or state.painted is None or keep <= 0:
        out = fresh
        state.resets += 1
    else:
        weight = (keep * motion.agree) * np.exp(motion.residual * (-1.0 / change))
        warped = warp(state.painted, motion.back)
        weight = weight[..., None].astype(np.float32)
        out = weight * warped + (1.0 - weight) * fresh
    state.painted, state.grey, state.thumb = out, motion.grey, motion.thumb
    return out


# -- measuring ---------------------------------------------------------------------------------
def warping_errors(frames: np.ndarray, sources: np.ndarray, valid: np.ndarray | None = None) -> list[float]:
    """Per consecutive pair: mean |warp(frame t-1) - frame t| over agreeing (and ``valid``) pixels.

    frames, sources: uint8 [T, H, W, 3] (frames may be the sources themselves); valid: bool [T, H, W].
    Flow is always computed on ``sources`` (t -> t-1 and back).
    """
    greys = [grey(s) for s in sources]

    def pair(t: int) -> float:
        back = dis_flow(greys[t], greys[t - 1])
        mask = flows_agree(back, dis_flow(greys[t - 1], greys[t]))
        if valid is not None:
            mask &= valid[t] & valid[t - 1]
        if not mask.any():
            return float("nan")
        diff = cv2.absdiff(warp(frames[t - 1], back), frames[t]).astype(np.float32).mean(-1)
        return float(diff[mask].mean())

    return map_frames(pair, list(range(1, len(frames))))


def warping_error(frames: np.ndarray, sources: np.ndarray, valid: np.ndarray | None = None) -> float:
    return float(np.nanmean(warping_errors(frames, sources, valid)))


def flicker_ratio(frames: np.ndarray, sources: np.ndarray, valid: np.ndarray | None = None) -> float:
    """Warping error of ``frames`` divided by the source's own (1.0: as steady as the footage)."""
    return warping_error(frames, sources, valid) / max(warping_error(sources, sources, valid), 1e-6)
