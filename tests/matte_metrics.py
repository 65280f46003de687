"""Matte quality against a known true alpha: IoU, boundary F-measure, edge-band alpha error."""
from __future__ import annotations

import cv2
import numpy as np


def iou(matte: np.ndarray, truth: np.ndarray) -> float:
    union = np.logical_or(matte, truth).sum()
    return float(np.logical_and(matte, truth).sum() / union) if union else 1.0


def mean_iou(mattes: np.ndarray, truths: np.ndarray) -> float:
    return float(np.mean([iou(m, t) for m, t in zip(mattes, truths)]))


def _boundary(mask: np.ndarray) -> np.ndarray:
    mask = mask.astype(np.uint8)
    return mask.astype(bool) & ~cv2.erode(mask, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)


def boundary_f(matte: np.ndarray, truth: np.ndarray, tolerance_px: float = 2.0) -> float:
    """F-measure of boundary pixels matched within ``tolerance_px`` (the DAVIS contour score)."""
    found, true = _boundary(matte), _boundary(truth)
    if not found.any() and not true.any():
        return 1.0
    if not found.any() or not true.any():
        return 0.0
    to_true = cv2.distanceTransform((~true).astype(np.uint8), cv2.DIST_L2, 3)
    to_found = cv2.distanceTransform((~found).astype(np.uint8), cv2.DIST_L2, 3)
    precision = float((to_true[found] <= tolerance_px).mean())
    recall = float((to_found[true] <= tolerance_px).mean())
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def mean_boundary_f(mattes: np.ndarray, truths: np.ndarray, tolerance_px: float = 2.0) -> float:
    return float(np.mean([boundary_f(m, t, tolerance_px) for m, t in zip(mattes, truths)]))


def edge_band(truth_alpha: np.ndarray, width_px: int = 3) -> np.ndarray:
    """Where the true alpha is fractional, plus ``width_px`` either side of its 0.5 contour."""
    contour = _boundary(truth_alpha > 0.5)
    near = cv2.dilate(contour.astype(np.uint8), np.ones((2 * width_px + 1,) * 2, np.uint8)).astype(bool)
    return near | ((truth_alpha > 0.02) & (truth_alpha < 0.98))


def edge_alpha_error(alpha: np.ndarray, truth_alpha: np.ndarray) -> tuple[float, float]:
    """Mean |alpha - truth| over the edge band, and the same for the truth cut hard at 0.5."""
    band = edge_band(truth_alpha)
    hard_cut = (truth_alpha > 0.5).astype(np.float32)
    return float(np.abs(alpha[band] - truth_alpha[band]).mean()), float(np.abs(hard_cut[band] - truth_alpha[band]).mean())
