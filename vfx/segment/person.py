"""Person matte with mediapipe's selfie segmentation, confirmed by its pose model (all bundled in the wheel).

Selfie segmentation alone also lights up on tripods, signs and litter, and at a CCTV or drone
distance it only sees people inside 256 px tiles. So, per frame:

- one whole-frame pass (people filling the frame), plus tiles only where people can be: where
  the picture moved, where last frame's people were, and one tile of a slow sweep over the
  frame (a person standing still is found within a sweep);
- blobs of the smoothed probability are tracked from frame to frame by overlap;
- a track is kept in the matte once it has persisted over ``min_hits`` frames and mediapipe's
  pose model has found a body on it (checked once, retried now and then for a track it refused).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import cv2
import numpy as np

from vfx.frames import FrameBatch, ShotState, Step
from vfx.matte import fill_holes, is_cut, smooth_probability, soft_edge, thumbnail_grey
from vfx.parallel import Lender

log = logging.getLogger(__name__)

Box = tuple[int, int, int, int]  # x0, y0, x1, y1


@dataclass
class PersonTrack:
    box: Box
    hits: int = 1
    misses: int = 0
    confirmed: bool = False
    next_check: int = 0  # frame count at which the pose model may look at it (again)
    refusals: int = 0  # times the pose model found no body on it


@dataclass
class PersonState:
    """What the person matte carries from one frame of a shot to the next."""

    probability: np.ndarray | None = None
    thumb: np.ndarray | None = None
    grey: np.ndarray | None = None  # half-size grey frame, for motion
    tracks: list[PersonTrack] = field(default_factory=list)
    frame_count: int = 0
    sweep: int = 0  # next tile of the slow sweep
    model_calls: int = 0
    before_jump: tuple | None = None  # state before a picture jump, restored if the jump was one damaged frame
    pose_calls: int = 0


def _selfie(selection: int):
    import mediapipe as mp

    return mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=selection)


def _pose():
    import mediapipe as mp

    # complexity 1 is the landmark model the wheel bundles (0 and 2 are downloaded on first use)
    return mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1, min_detection_confidence=0.5)


# Shared by every PersonSegmenter of the process (the graphs keep no state between frames).
SELFIE = {selection: Lender(lambda s=selection: _selfie(s)) for selection in (0, 1)}  # 0: close range, 1: whole scene
POSE = Lender(_pose)


class PersonSegmenter(Step):
    """Sets ``batch.matte`` to where confirmed people are, smoothed over time, soft at the edge."""

    name = "segment"

    def __init__(self, feather_px: float = 6.0, smoothing: float = 0.6, threshold: float = 0.5, tile_px: int = 256,
                 min_hits: int = 2, max_tiles: int = 5, recheck_frames: int = 3, max_pose_checks: int = 1,
                 min_area_px: int = 60):
        self.tile_px = tile_px
        self.feather_px = feather_px
        self.smoothing = smoothing
        self.threshold = threshold
        self.min_hits = min_hits
        self.max_tiles = max_tiles
        self.recheck_frames = recheck_frames
        self.max_pose_checks = max_pose_checks  # per frame: bounds the cost when many new blobs appear
        self.min_area_px = min_area_px

    # -- per batch ------------------------------------------------------------------------
    def __call__(self, batch: FrameBatch, shot: ShotState) -> FrameBatch:
        state = shot.steps.get(self.name)
        if not isinstance(state, PersonState):
            state = shot.steps[self.name] = PersonState()
        batch.matte = np.stack([self._frame(rgb, state) for rgb in batch.originals])
        return batch

    def _frame(self, rgb: np.ndarray, state: PersonState) -> np.ndarray:
        thumb = thumbnail_grey(rgb)
        grey = cv2.cvtColor(cv2.resize(rgb, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
        if state.before_jump is not None:
            saved, state.before_jump = state.before_jump, None
            if not is_cut(saved[1], thumb):  # the frame before was damaged, not a cut: pick up where we were
                log.info("person matte: one damaged frame, not a cut; people are kept")
                state.probability, state.thumb, state.grey, state.tracks = saved
        if is_cut(state.thumb, thumb):
            # a new shot (or a damaged frame): yesterday's matte and people must not bleed into it
            state.before_jump = (state.probability, state.thumb, state.grey, state.tracks)
            state.probability, state.grey, state.tracks = None, None, []
        probability = self.probabilities(rgb, state, grey)
        state.probability = smooth_probability(state.probability, probability, self.smoothing)
        state.thumb, state.grey = thumb, grey
        hard = state.probability > self.threshold
        people = self._track(rgb, hard, state)
        state.frame_count += 1
        return soft_edge(rgb, people, self.feather_px)

    def probabilities(self, frame: np.ndarray, state: PersonState | None = None, grey: np.ndarray | None = None) -> np.ndarray:
        """Whole frame, max-combined with 256 px tiles where people can be.

        The model sees its input at 256x144 (landscape); a person 60 px tall in a 768x576 CCTV
        or drone frame shrinks to a few pixels there and is missed, but fills a good part of a
        256 px tile at native resolution.
        """
        state = state if state is not None else PersonState()
        with SELFIE[1].lend() as model:
            probability = model.process(frame).segmentation_mask.astype(np.float32)
        state.model_calls += 1
        h, w = probability.shape
        if self.tile_px <= 0:
            return probability
        for x, y, side in self._tiles(state, grey, h, w):
            crop = np.ascontiguousarray(frame[y:y + side, x:x + side])
            region = probability[y:y + side, x:x + side]
            with SELFIE[0].lend() as model:
                np.maximum(region, model.process(crop).segmentation_mask, out=region)
            state.model_calls += 1
        return probability

    # -- where to look --------------------------------------------------------------------
    def _tiles(self, state: PersonState, grey: np.ndarray | None, h: int, w: int) -> list[tuple[int, int, int]]:
        """Square crops (x, y, side) around last frame's people and what moved, plus one sweep tile.

        The model finds a person best when they fill about half its square input, so each crop
        is about twice the person's height; people close together share a crop.
        """
        # (box, weight): people already seen come before mere motion, confirmed ones first
        regions = [(t.box, 8 if t.confirmed else 4) for t in state.tracks]
        if grey is not None and state.grey is not None and grey.shape == state.grey.shape:
            regions += [(box, 1) for box in _motion_boxes(grey, state.grey, scale=2)]
        largest = min(h, w, 2 * self.tile_px)
        crops: list[list[float]] = []  # x0, y0, x1, y1, score, the side its people want
        for box, weight in sorted(regions, key=lambda r: _area(r[0]) * r[1], reverse=True):
            for piece in _pieces(box, largest // 2):
                side = float(np.clip(2.2 * max(piece[2] - piece[0], piece[3] - piece[1]), 96, largest))
                cx, cy = (piece[0] + piece[2]) / 2, (piece[1] + piece[3]) / 2
                square = [cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2, _area(piece) * weight, side]
                for crop in crops:
                    union = [min(crop[0], square[0]), min(crop[1], square[1]), max(crop[2], square[2]), max(crop[3], square[3])]
                    if max(union[2] - union[0], union[3] - union[1]) <= 1.3 * max(crop[5], side):
                        crop[5] = max(crop[5], side)
                        crop[:4] = union
                        crop[4] += square[4]
                        break
                else:
                    crops.append(square)
        chosen = []
        for x0, y0, x1, y1, _, _ in sorted(crops, key=lambda c: -c[4])[:self.max_tiles]:
            side = int(min(largest, max(x1 - x0, y1 - y0)))
            chosen.append((int(np.clip((x0 + x1 - side) / 2, 0, w - side)), int(np.clip((y0 + y1 - side) / 2, 0, h - side)), side))
        if state.frame_count % 2 == 0 and min(h, w) >= 1.25 * self.tile_px:  # the sweep: a person standing still is found within a round
            grid = _tile_origins(h, w, self.tile_px)
            sweep_y, sweep_x = grid[state.sweep % len(grid)]
            state.sweep += 1
            chosen.append((sweep_x, sweep_y, self.tile_px))
        return chosen

    # -- who is a person ------------------------------------------------------------------
    def _track(self, rgb: np.ndarray, hard: np.ndarray, state: PersonState) -> np.ndarray:
        count, labels, stats, _ = cv2.connectedComponentsWithStats(hard.astype(np.uint8), connectivity=8)
        blobs = [label for label in range(1, count) if stats[label, cv2.CC_STAT_AREA] >= self.min_area_px]
        boxes = {label: _stat_box(stats[label]) for label in blobs}
        matched: dict[int, PersonTrack] = {}
        seen: set[int] = set()
        for label in blobs:
            # people merge into one blob and split again: a blob continues the track it overlaps
            # most, and is a confirmed person when it mostly covers, or is mostly covered by, one
            box = boxes[label]
            scores = [_iou(t.box, box) for t in state.tracks]
            best = int(np.argmax(scores)) if scores else -1
            confirmed = any(t.confirmed and _cover(t.box, box) > 0.5 for t in state.tracks)
            if best >= 0 and scores[best] > 0.2:
                seen.add(best)
                old = state.tracks[best]
                matched[label] = PersonTrack(box, old.hits + 1, 0, old.confirmed or confirmed, old.next_check, old.refusals)
            else:
                seen.update(i for i, t in enumerate(state.tracks) if _cover(t.box, box) > 0.5)
                matched[label] = PersonTrack(box, 1 + confirmed, confirmed=confirmed, next_check=state.frame_count)
        lost = [t for i, t in enumerate(state.tracks) if i not in seen]
        for track in lost:
            track.misses += 1
        state.tracks = list(matched.values()) + [t for t in lost if t.misses <= 3]
        checks = 0
        # tracks the pose model has not seen yet come first: a tripod it refused must not starve a newcomer
        for track in sorted(matched.values(), key=lambda t: (t.refusals, -t.hits, -_area(t.box))):
            if track.confirmed or track.hits < self.min_hits or track.next_check > state.frame_count:
                continue
            if checks >= self.max_pose_checks:
                break
            checks += 1
            track.confirmed = self._looks_like_a_person(rgb, track.box, state)
            track.refusals += not track.confirmed
            track.next_check = state.frame_count + self.recheck_frames * (1 if track.refusals <= 2 else 4)
        keep = np.zeros(count, dtype=bool)
        for label, track in matched.items():
            keep[label] = track.confirmed
        return fill_holes(keep[labels])

    def _looks_like_a_person(self, rgb: np.ndarray, box: Box, state: PersonState) -> bool:
        """The pose model finds a body in a square crop around the blob, enlarged to its input size."""
        x0, y0, x1, y1 = box
        side = int(max(x1 - x0, y1 - y0) * 1.5) + 8
        cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
        h, w = rgb.shape[:2]
        crop = rgb[max(0, cy - side // 2):min(h, cy + side // 2), max(0, cx - side // 2):min(w, cx + side // 2)]
        if crop.size == 0:
            return False
        crop = np.ascontiguousarray(cv2.resize(crop, (256, 256), interpolation=cv2.INTER_CUBIC))
        state.pose_calls += 1
        with POSE.lend() as pose:
            return pose.process(crop).pose_landmarks is not None


def _motion_boxes(grey: np.ndarray, previous: np.ndarray, scale: int, threshold: int = 14) -> list[Box]:
    """Boxes (full-frame pixels) around what changed between two half-size grey frames."""
    moved = (cv2.absdiff(grey, previous) > threshold).astype(np.uint8)
    moved = cv2.dilate(cv2.morphologyEx(moved, cv2.MORPH_OPEN, np.ones((2, 2), np.uint8)), np.ones((9, 9), np.uint8))
    count, _, stats, _ = cv2.connectedComponentsWithStats(moved, connectivity=8)
    return [tuple(v * scale for v in _stat_box(stats[label])) for label in range(1, count)
            if stats[label, cv2.CC_STAT_AREA] >= 40]


def _grow(box: Box, by: int) -> Box:
    return box[0] - by, box[1] - by, box[2] + by, box[3] + by


def _pieces(box: Box, size: int) -> list[Box]:
    """A box cut into pieces no larger than ``size`` on a side."""
    x0, y0, x1, y1 = box
    return [(x, y, min(x1, x + size), min(y1, y + size)) for y in range(y0, y1, size) for x in range(x0, x1, size)]


def _stat_box(stat: np.ndarray) -> Box:
    x, y, w, h = (int(v) for v in stat[:4])
    return x, y, x + w, y + h


def _area(box: Box) -> int:
    return max(0, box[2] - box[0]) * max(0, box[3] - box[1])


def _cover(a: Box, b: Box) -> float:
    """Intersection over the smaller box."""
    inter = _area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))
    return inter / max(1, min(_area(a), _area(b)))


def _iou(a: Box, b: Box) -> float:
    inter = _area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))
    return inter / max(1, _area(a) + _area(b) - inter)


def _tile_origins(height: int, width: int, tile: int, overlap: float = 0.25) -> list[tuple[int, int]]:
    stride = int(tile * (1 - overlap))
    ys = list(range(0, height - tile + 1, stride))
    xs = list(range(0, width - tile + 1, stride))
    if ys[-1] + tile < height:
        ys.append(height - tile)
    if xs[-1] + tile < width:
        xs.append(width - tile)
    return [(y, x) for y in ys for x in xs]
