"""Matte utilities shared by every segmenter and the compositor: soft alpha at the edge, smoothing."""
from __future__ import annotations

import cv2
import numpy as np
import scipy.sparse as sparse
import scipy.sparse.linalg as sparse_linalg


# The guided-filter prior's weight in the band where the outline is ragged: too weak to hold the outline's fill
# between strands (0.05, the smooth-edge weight, kept it) ...
RAGGED_PRIOR_WEIGHT = 1e-3
# ... except on flat pixels (summed per-channel standard deviation over 5x5 below this many levels, about the
# footage's noise): no colour line passes there to decide, so the prior holds them (weight 1). Without this a
# right outline did worse than before (dark strands on a dark background faded out).
FLAT_LEVELS = 8.0
FLAT_PRIOR_WEIGHT = 1.0
# Weight pulling the alpha of pixels a tracker vouches for (``band_matting``'s ``vouched``) toward 1: the smooth edge's
# prior weight; 0.5 or more made anti-aliased strand edges solid.
VOUCHED_WEIGHT = 0.05
# Weight pulling alpha toward an alpha measured another way (``band_matting``'s ``measured``).
MEASURED_WEIGHT = 0.3


def feather(hard: np.ndarray, width: float) -> np.ndarray:
    """Soften a binary matte outward over ``width`` pixels; inside the subject it stays exactly 1.

    Feathering outward (never inward) is what keeps every subject pixel untouched.
    """
    hard = hard.astype(bool)
    if width <= 0 or not hard.any():
        return hard.astype(np.float32)
    distance = cv2.distanceTransform((~hard).astype(np.uint8), cv2.DIST_L2, 3)
    soft = np.clip(1.0 - distance / float(width), 0.0, 1.0)
    soft = soft * soft * (3.0 - 2.0 * soft)  # smoothstep: no visible ring at the feather's end
    soft[hard] = 1.0
    return soft.astype(np.float32)


def soft_edge(frame_rgb: np.ndarray, hard: np.ndarray, width: float, eps: float = 1e-2) -> np.ndarray:
    """Turn a hard matte into an alpha matte that is fractional only in a band around its edge.

    A guided filter with the frame as guide lets the matte follow the picture's own edges inside
    the band: hair strands, a blurred rim or motion blur get the fraction of subject they show,
    and a hard matte that is a pixel off snaps to the real edge. Deep inside the subject alpha
    stays exactly 1 (those pixels stay bit-identical), far outside exactly 0.
    """
    hard = hard.astype(bool)
    radius = int(round(width))
    if radius <= 0 or not hard.any():
        return hard.astype(np.float32)
    kernel = disc(radius)
    hard_u8 = hard.astype(np.uint8)
    grown = cv2.dilate(hard_u8, kernel).astype(bool)
    core = cv2.erode(hard_u8, kernel).astype(bool)
    alpha = core.astype(np.float32)
    band = grown & ~core
    h, w = hard.shape
    pad = 2 * radius
    count, labels, stats, _ = cv2.connectedComponentsWithStats(grown.astype(np.uint8), connectivity=8)
    for label in range(1, count):
        x, y, bw, bh = stats[label, :4]  # one window per blob: far cheaper than the whole frame for small people
        y0, y1 = max(0, y - pad), min(h, y + bh + pad)
        x0, x1 = max(0, x - pad), min(w, x + bw + pad)
        guide = frame_rgb[y0:y1, x0:x1].astype(np.float32) / 255.0
        filtered = cv2.ximgproc.guidedFilter(guide, hard[y0:y1, x0:x1].astype(np.float32), radius, eps)
        # snap near-certain values so flat regions are exactly in or out, not 0.99 or 0.01
        soft = np.clip((filtered - 0.04) / 0.92, 0.0, 1.0)
        inner = band[y0:y1, x0:x1] & (labels[y0:y1, x0:x1] == label)
        alpha[y0:y1, x0:x1][inner] = soft[inner]
    return alpha


def band_matting(frame_rgb: np.ndarray, hard: np.ndarray, width: float, prior_weight: float = 0.05,
                 vouched: np.ndarray | None = None,
                 measured: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Closed-form matting (Levin et al.) solved only in an unknown band around a hard matte's edge.

    The hard matte of a tracker is a pixel or two off and misses strands; the trimap built from it
    (core eroded by ``width`` = subject, beyond twice ``width`` = background) fixes what is certain,
    and in the band the matting Laplacian lets alpha follow the picture's local colour lines. The guided-filter
    alpha is a weak prior there, so a band with no clear colour boundary keeps that answer instead
    of drifting. Where the outline is ragged (hair, fur: see ``ragged_zone``) the tracker's cut is least
    to be trusted, so there the unknown band reaches twice as deep inside and the prior is nearly off
    wherever the picture has colour lines: they alone separate strands from the background between them. Alpha is exactly 1 in
    the core (those pixels stay bit-identical), 0 beyond the band. ``vouched``: band pixels the caller knows to be
    subject (a tracker's motion tests), whose alpha is pulled toward 1 with ``VOUCHED_WEIGHT``. ``measured``: an
    alpha measured another way and where it holds (float32, bool); band pixels there are pulled toward it with
    ``MEASURED_WEIGHT``.
    """
    from pymatting import cf_laplacian  # imported here: numba compiles it on first use

    hard = hard.astype(bool)
    radius = int(round(width))
    if radius <= 0 or not hard.any():
        return hard.astype(np.float32)
    hard_u8 = hard.astype(np.uint8)
    inner, outer = radius, 2 * radius
    ragged = ragged_zone(hard, radius)
    deep = cv2.erode(hard_u8, disc(2 * inner)).astype(bool)
    core = cv2.erode(hard_u8, disc(inner)).astype(bool) & (deep | ~ragged)
    grown = cv2.dilate(hard_u8, disc(outer)).astype(bool)
    prior = soft_edge(frame_rgb, hard, width)
    alpha = core.astype(np.float32)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(grown.astype(np.uint8), connectivity=8)
    h, w = hard.shape
    for label in range(1, count):
        x, y, bw, bh = stats[label, :4]
        y0, y1, x0, x1 = max(0, y - 2), min(h, y + bh + 2), max(0, x - 2), min(w, x + bw + 2)
        window = (slice(y0, y1), slice(x0, x1))
        known = ~grown[window] | core[window]
        seed = prior[window].astype(np.float64)
        seed[known] = core[window][known]
        flat = _local_contrast(frame_rgb[window]) < FLAT_LEVELS
        weight = np.where(ragged[window], np.where(flat, FLAT_PRIOR_WEIGHT, RAGGED_PRIOR_WEIGHT), prior_weight)
        if vouched is not None:
            _pull_toward(weight, seed, vouched[window] & ~known, 1.0, VOUCHED_WEIGHT)
        if measured is not None:
            _pull_toward(weight, seed, measured[1][window] & ~known, measured[0][window], MEASURED_WEIGHT)
        laplacian = cf_laplacian(frame_rgb[window].astype(np.float64) / 255.0, epsilon=1e-5, radius=1)
        solved = _solve_unknown(laplacian, weight, seed, ~known)
        inside = (labels[window] == label) & ~known
        # snap near-certain values as soft_edge does: the solver's faint haze over the background is no subject
        alpha[window][inside] = np.clip((solved[inside] - 0.05) / 0.9, 0.0, 1.0)
    return alpha


def _pull_toward(weight: np.ndarray, seed: np.ndarray, where: np.ndarray, alpha: float | np.ndarray,
                 strength: float) -> None:
    """Pull the ``where`` pixels' alpha toward ``alpha`` (a value, or one per pixel) with at least ``strength``."""
    weight[where] = np.maximum(weight[where], strength)
    seed[where] = alpha if np.isscalar(alpha) else alpha[where]


def _solve_unknown(laplacian: sparse.csr_matrix, weight: np.ndarray, seed: np.ndarray, unknown: np.ndarray) -> np.ndarray:
    """Minimise a'La + sum(weight (a - seed)^2) over the unknown pixels, the known ones held at ``seed``.

    Solving for the unknown pixels alone, with a Jacobi preconditioner, holds the known ones exactly
    and needs far fewer conjugate-gradient steps than the whole window with stiff weights on the
    known pixels. The tolerance is relative to the unknown pixels' own right-hand side: 1e-3 gave the
    same edge-band error as 1e-5 on the soft-edged clips, in half the time.
    """
    flat = unknown.ravel()
    if not flat.any():
        return seed
    known_values = seed.ravel()[~flat]
    rows = laplacian.tocsr()[flat]
    system = rows[:, flat] + sparse.diags(weight.ravel()[flat])
    rhs = weight.ravel()[flat] * seed.ravel()[flat] - rows[:, ~flat] @ known_values
    jacobi = sparse.diags(1.0 / system.diagonal())
    solved_unknown, _ = sparse_linalg.cg(system, rhs, x0=seed.ravel()[flat], rtol=1e-3, maxiter=500, M=jacobi)
    solved = seed.ravel().copy()
    solved[flat] = solved_unknown
    return solved.reshape(seed.shape)


def _local_contrast(rgb: np.ndarray) -> np.ndarray:
    """Per-channel standard deviation over 5x5 pixels, summed over the channels (grey levels)."""
    return local_std(rgb, 5).sum(axis=-1)


def local_std(image: np.ndarray, size: int) -> np.ndarray:
    """float32 standard deviation of each channel over ``size`` x ``size`` pixels."""
    image = image.astype(np.float32)
    mean = cv2.blur(image, (size, size))
    return np.sqrt(np.maximum(cv2.blur(image * image, (size, size)) - mean * mean, 0.0))


def ragged_zone(hard: np.ndarray, radius: int) -> np.ndarray:
    """Pixels within ``2 * radius`` of where the outline has spikes or notches narrower than ``2 * radius``.

    A tracker's cut around hair hugs the strands' tips and fills the background between them (the
    colour models cannot tell it from the subject); a spiky, notched outline is what gives that away,
    while a smooth stretch of outline is where the cut is sound.
    """
    hard_u8 = hard.astype(np.uint8)
    kernel = disc(radius)
    spikes = hard & ~cv2.morphologyEx(hard_u8, cv2.MORPH_OPEN, kernel).astype(bool)
    notches = cv2.morphologyEx(hard_u8, cv2.MORPH_CLOSE, kernel).astype(bool) & ~hard
    return cv2.dilate((spikes | notches).astype(np.uint8), disc(2 * radius)).astype(bool)


def disc(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def smooth_probability(previous: np.ndarray | None, current: np.ndarray, alpha: float) -> np.ndarray:
    """Exponential moving average of per-pixel subject probability, so edges do not boil."""
    if previous is None or previous.shape != current.shape:
        return current.astype(np.float32)
    return (alpha * current + (1.0 - alpha) * previous).astype(np.float32)


def keep_main_regions(hard: np.ndarray, min_fraction: float = 0.02) -> np.ndarray:
    """Drop specks smaller than ``min_fraction`` of the largest region and fill holes."""
    if min_fraction <= 0:
        return fill_holes(hard)
    hard = hard.astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(hard, connectivity=8)
    if count <= 1:
        return hard.astype(bool)
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = np.zeros(count, dtype=bool)
    keep[1:] = areas >= max(1, areas.max() * min_fraction)
    kept = keep[labels]
    return fill_holes(kept)


def fill_holes(hard: np.ndarray) -> np.ndarray:
    """Background regions that do not reach the frame border are holes in the subject."""
    h, w = hard.shape
    outside = np.zeros((h + 2, w + 2), np.uint8)
    outside[1:-1, 1:-1] = hard.astype(np.uint8)
    cv2.floodFill(outside, None, (0, 0), 2)  # the padded border connects every border-touching region
    return outside[1:-1, 1:-1] != 2


def resize_matte(matte: np.ndarray, width: int, height: int) -> np.ndarray:
    if matte.shape == (height, width):
        return matte
    return cv2.resize(matte.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)


def matte_preview(frame_rgb: np.ndarray, matte: np.ndarray, colour: tuple[int, int, int] = (255, 40, 90)) -> np.ndarray:
    """The frame with the background dimmed and tinted, for a matte preview picture."""
    tint = np.asarray(colour, dtype=np.float32)
    dim = frame_rgb.astype(np.float32) * 0.35 + tint * 0.25
    alpha = matte[..., None]
    return (frame_rgb * alpha + dim * (1.0 - alpha)).astype(np.uint8)


def thumbnail_grey(frame_rgb: np.ndarray) -> np.ndarray:
    """A tiny grey copy of a frame, enough to tell a cut from motion."""
    return cv2.cvtColor(cv2.resize(frame_rgb, (96, 72), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY).astype(np.float32)


def is_cut(previous_thumb: np.ndarray | None, thumb: np.ndarray, threshold: float = 30.0) -> bool:
    """A hard cut: the mean grey change over the whole picture is far beyond any camera move."""
    return previous_thumb is not None and float(np.abs(thumb - previous_thumb).mean()) > threshold
