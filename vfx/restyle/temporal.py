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
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from vfx.matte import is_cut, thumbnail_grey
from vfx.parallel import map_frames

_local = threading.local()


def dis_flow(grey: np.ndarray, other: np.ndarray, preset: int = cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
             iterations: tuple[int, int] | None = None) -> np.ndarray:
    """Flow from ``grey`` to ``other``: ``grey[y, x]`` is seen at ``other[y + fy, x + fx]`` (one DIS per thread).

    ``iterations``: the preset's (patch gradient-descent, variational refinement) iteration counts
    replaced by these.
    """
    cache = getattr(_local, "dis", None)
    if cache is None:
        cache = _local.dis = {}
    if (preset, iterations) not in cache:
        dis = cache[preset, iterations] = cv2.DISOpticalFlow_create(preset)
        if iterations is not None:
            dis.setGradientDescentIterations(iterations[0])
            dis.setVariationalRefinementIterations(iterations[1])
    return cache[preset, iterations].calc(grey, other, None)


# The flows restyling computes (the carry's, and the occlusion check's): DIS medium with 12 patch-descent
# and 4 refinement iterations instead of 25 and 5. 20% less CPU at 768x576 (39 -> 31 ms a frame), and as
# steady measured by the flows the painting was not carried along; only the metric's own flow (DIS
# medium) reads it a little higher (benchmarks/RESULTS.md, "Less CPU a frame at 768x576").
FLOW_ITERATIONS = (12, 4)


_grids: dict[tuple[int, int], np.ndarray] = {}


def _grid(h: int, w: int) -> np.ndarray:
    """float32 [2, h, w] pixel coordinates (y, x), made once per size."""
    grid = _grids.get((h, w))
    if grid is None:
        grid = _grids[(h, w)] = np.mgrid[0:h, 0:w].astype(np.float32)
    return grid


def _targets(flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float32 (x, y) each pixel of ``flow`` points to."""
    grid = _grid(*flow.shape[:2])
    return grid[1] + flow[..., 0], grid[0] + flow[..., 1]


def warp(image: np.ndarray, flow: np.ndarray, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """Pull ``image`` (the other frame) into this frame along ``flow`` (this frame -> other)."""
    return cv2.remap(image, *_targets(flow), interpolation, borderMode=cv2.BORDER_REPLICATE)


Maps = tuple[np.ndarray, np.ndarray]  # remap's fixed-point maps (1/32 pixel): cv2.convertMaps(..., CV_16SC2)


def fixed_maps(flow: np.ndarray) -> Maps:
    """``flow`` as the fixed-point maps remap would make of it itself on every call (the same pixels)."""
    return cv2.convertMaps(*_targets(flow), cv2.CV_16SC2)


def carry(painting: np.ndarray, maps: Maps) -> np.ndarray:
    """A painting moved one frame along a flow (its ``fixed_maps``), for a painting carried through hundreds of frames.

    Bilinear resampling blurs a little more every frame it is applied (the strokes melt within a
    second); OpenCV's bicubic (a = -0.75) sharpens a little more every frame (the strokes turn to
    crackle). Their mean is close to neutral.
    """
    linear = cv2.remap(painting, *maps, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    cubic = cv2.remap(painting, *maps, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    return cv2.addWeighted(linear, 0.5, cubic, 0.5, 0.0)


def flows_agree(flow_back: np.ndarray, flow_fwd: np.ndarray) -> np.ndarray:
    """bool [H, W]: following ``flow_back`` (t -> t-1) then ``flow_fwd`` (t-1 -> t) returns home.

    The tolerance grows with the motion (Sundaram et al. 2010, as used by Ruder et al. 2016);
    pixels whose flow leaves the frame are never trusted.
    """
    h, w = flow_back.shape[:2]
    x, y = _targets(flow_back)  # once, for the warp and for what leaves the frame
    bx, by = cv2.split(flow_back)  # contiguous planes: numpy on the interleaved views took 3x as long
    tx, ty = cv2.split(cv2.remap(flow_fwd, x, y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE))  # ``warp``
    lx, ly = bx + tx, by + ty
    tolerance = 0.01 * ((bx * bx + by * by) + (tx * tx + ty * ty)) + 0.5
    inside = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
    return (lx * lx + ly * ly <= tolerance) & inside


def grey(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def resize_flow(flow: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``flow`` resampled to ``size`` (width, height), its vectors scaled with it."""
    h, w = flow.shape[:2]
    out = cv2.resize(flow, size, interpolation=cv2.INTER_AREA if size[0] < w else cv2.INTER_LINEAR)
    out[..., 0] *= size[0] / w
    out[..., 1] *= size[1] / h
    return out


# -- stabilising -------------------------------------------------------------------------------
@dataclass
class PreviousFrame:
    """The last frame the flow saw, for the next batch's first flow (the flow stage's memory)."""

    grey: np.ndarray | None = None  # grey, at the carry size
    small: np.ndarray | None = None  # the same at the check size
    thumb: np.ndarray | None = None  # tiny grey copy, to tell a cut from motion


@dataclass
class TemporalState:
    """The stabilising's memory."""

    painted: np.ndarray | None = None  # last stabilised painting, float32 [h, w, 3] at the carry size
    resets: int = 0  # cuts (and the shot's start) where painting started over


@dataclass
class Motion:
    """What is known about one frame against the frame before it (computed in parallel per batch)."""

    grey: np.ndarray
    small: np.ndarray
    thumb: np.ndarray
    back: np.ndarray | None = None  # flow t -> t-1, at the carry size (``grey``'s)
    maps: Maps | None = None  # ``back`` as remap's fixed-point maps: made once for the residual and the carry
    prior: tuple[np.ndarray, np.ndarray] | None = None  # frame t-1's grey and small grey, for ``check``
    agree: np.ndarray | None = None  # float32 0..1: forward and backward flow agree (after ``check``)
    residual: np.ndarray | None = None  # uint8 |source t - warped source t-1| in grey levels
    novel: float = 0.0  # fraction of the frame the previous one does not explain (residual above NOVEL_LEVELS)
    key: bool = False  # painted afresh (a key frame), decided by the restyle's flow stage
    fresh: np.ndarray | None = None  # a key frame's fresh painting at the carry size, from the restyle's paint stage

    def check(self) -> Motion:
        """Where the backward flow can be trusted: the forward flow at the small size agrees with it
        (occlusions) and the motion-compensated source did not change. Only frames that blend a
        fresh painting need it (``stabilise``)."""
        if self.back is not None and self.agree is None:
            prior, prior_small = self.prior
            h, w = self.small.shape
            agree = flows_agree(resize_flow(self.back, (w, h)), dis_flow(prior_small, self.small, iterations=FLOW_ITERATIONS))
            self.agree = cv2.resize(agree.astype(np.float32), self.grey.shape[::-1], interpolation=cv2.INTER_LINEAR)
        return self


NOVEL_LEVELS = 20  # grey levels of motion-compensated change that mean new content (walkers, disocclusions)


def motions(sources: list[np.ndarray], state: PreviousFrame, check_size: tuple[int, int], carry_size: tuple[int, int]) -> list[Motion]:
    """Backward flow of every frame of a batch against its predecessor (the previous batch's last for the first).

    The backward flow, which moves the painting, is computed at the size the painting is carried at
    (``carry_size``, the frame's own up to ``restyle.neural_carry``): on flat, clean footage (animation) a flow from a smaller
    copy than the painting misplaces its strokes by a pixel and they shimmer (Megamind.avi: warping
    error 1.17x the source's with full-size flow, 2.0x at 3/4 size). The forward flow only checks it,
    for occlusions, at ``check_size`` (the network's size): ``Motion.check``.
    """
    greys = [grey(s) for s in sources]
    if carry_size != greys[0].shape[::-1]:
        greys = [cv2.resize(g, carry_size, interpolation=cv2.INTER_AREA) for g in greys]
    smalls = [cv2.resize(g, check_size, interpolation=cv2.INTER_AREA) for g in greys]
    thumbs = [thumbnail_grey(s) for s in sources]
    before = [(state.grey, state.small, state.thumb), *zip(greys[:-1], smalls[:-1], thumbs[:-1])]

    def one(i: int) -> Motion:
        motion = Motion(greys[i], smalls[i], thumbs[i])
        prior, prior_small, prior_thumb = before[i]
        if prior is None or prior.shape != greys[i].shape or is_cut(prior_thumb, thumbs[i]):
            return motion
        motion.back = dis_flow(greys[i], prior, iterations=FLOW_ITERATIONS)
        motion.prior = (prior, prior_small)
        motion.maps = fixed_maps(motion.back)
        residual = cv2.absdiff(greys[i], cv2.remap(prior, *motion.maps, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE))
        motion.novel = cv2.countNonZero(cv2.compare(residual, NOVEL_LEVELS, cv2.CMP_GT)) / residual.size
        motion.residual = residual
        return motion

    moves = map_frames(one, list(range(len(sources))))
    state.grey, state.small, state.thumb = greys[-1], smalls[-1], thumbs[-1]
    return moves


def carry_weight(motion: Motion, keep: float, change: float) -> np.ndarray:
    """float32 [H, W, 1]: how much of the carried painting to keep at each pixel.

    ``keep`` where the flows agree and the source did not change, falling with the
    motion-compensated source change (``change`` grey levels: 1/e). Then made decisive: a pixel
    either carries the previous painting or takes the fresh one, because a half-and-half mix of two
    unrelated stroke patterns is a blur, not a painting.
    """
    soft = keep * motion.agree * np.exp(motion.residual.astype(np.float32) * (-1.0 / change))
    return np.clip(2.0 * soft - 0.5, 0.0, keep)[..., None]


def stabilise(fresh: np.ndarray | None, motion: Motion, state: TemporalState, keep: float, change: float = 20.0) -> np.ndarray:
    """The painted frame to show: the carried previous painting where it is still valid, ``fresh`` elsewhere.

    Between key frames there is no fresh painting (``fresh`` None) and the carried painting is shown
    whole. It used to be blended with the last key frame's painting carried along too, which cost a
    second resampling of the frame and the flow check, for pixels that painting could not show any
    better (it was as old, and moved along the same flow); Megamind.avi's warping error went down
    without it (1.15x -> 0.86x the source's, 60 frames).
    """
    if motion.back is None or state.painted is None:
        if fresh is None:
            raise ValueError("a restart needs a fresh painting")
        out = fresh
        state.resets += 1
    elif fresh is None:
        out = carry(state.painted, motion.maps)
    elif keep <= 0:
        out = fresh
    else:
        fresh_weight = cv2.merge([1.0 - carry_weight(motion.check(), keep, change)[..., 0]] * 3)
        carried = carry(state.painted, motion.maps)
        out = cv2.add(carried, cv2.multiply(cv2.subtract(fresh, carried), fresh_weight))  # weight * carried + (1 - weight) * fresh
    state.painted = out
    return out


# -- measuring ---------------------------------------------------------------------------------
Flow = Callable[[np.ndarray, np.ndarray], np.ndarray]  # flow(grey, other): grey's pixels to where ``other`` shows them


def farneback_flow(grey: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Flow from ``grey`` to ``other`` by Farneback's method: a flow the restyle never carries its painting
    along, to measure with. Measured with DIS medium at full size, the very flow that carries the
    painting, the carried frames score as if perfect (Megamind.avi at 720p: 0.69x the source's
    warping error by DIS medium, 2.65x by DIS fast, 4.96x by Farneback)."""
    return cv2.calcOpticalFlowFarneback(grey, other, None, 0.5, 4, 15, 3, 5, 1.2, 0)


def warping_errors(frames: np.ndarray, sources: np.ndarray, valid: np.ndarray | None = None, flow: Flow = dis_flow) -> list[float]:
    """Per consecutive pair: mean |warp(frame t-1) - frame t| over agreeing (and ``valid``) pixels.

    frames, sources: uint8 [T, H, W, 3] (frames may be the sources themselves); valid: bool [T, H, W].
    Flow (``flow(grey, other)``) is always computed on ``sources`` (t -> t-1 and back). A pair across a shot cut has no
    motion to follow and is NaN (left out of the mean): flow between two shots still "agrees" on
    some pixels, and one such pair outweighed the 29 others of Megamind.avi frames 150-179.
    """
    greys = [grey(s) for s in sources]
    thumbs = [thumbnail_grey(s) for s in sources]

    def pair(t: int) -> float:
        if is_cut(thumbs[t - 1], thumbs[t]):
            return float("nan")
        back = flow(greys[t], greys[t - 1])
        mask = flows_agree(back, flow(greys[t - 1], greys[t]))
        if valid is not None:
            mask &= valid[t] & valid[t - 1]
        if not mask.any():
            return float("nan")
        diff = cv2.absdiff(warp(frames[t - 1], back), frames[t]).astype(np.float32).mean(-1)
        return float(diff[mask].mean())

    return map_frames(pair, list(range(1, len(frames))))


def warping_error(frames: np.ndarray, sources: np.ndarray, valid: np.ndarray | None = None, flow: Flow = dis_flow) -> float:
    return float(np.nanmean(warping_errors(frames, sources, valid, flow)))


def flicker_ratio(frames: np.ndarray, sources: np.ndarray, valid: np.ndarray | None = None, flow: Flow = dis_flow) -> float:
    """Warping error of ``frames`` divided by the source's own (1.0: as steady as the footage)."""
    return warping_error(frames, sources, valid, flow) / max(warping_error(sources, sources, valid, flow), 1e-6)
