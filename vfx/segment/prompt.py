"""Promptable subject matte: GrabCut on key frames, tracked both ways with DIS optical flow.

The key frame's mask is warped frame to frame by dense flow (so it follows camera motion) and
re-refined by GrabCut in a narrow band around the warped edge, so it does not drift off the
subject. In that band, the world as the last frames showed it behind the subject's edge (a clean
plate, moved here along the world's homographies) tells apart background that looks like the subject
and subject that looks like the background; and as that world slides behind the edge over the frames, how much
an edge pixel's colour follows it measures the pixel's alpha. Frames before the key frame are tracked backward in a
first pass whose masks wait in a temporary file, which keeps memory flat however long the shot is.
Each later key frame re-prompts the subject from the user's prompt there (after a cut, or where
tracking drifted).
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from vfx.errors import VfxError
from vfx.frames import FrameBatch, FrameSource, ShotState, Step, require_frames
from vfx.matte import band_matting, disc, fill_holes, is_cut, local_std, resize_matte, thumbnail_grey
from vfx.parallel import map_frames
from vfx.segment.appearance import Appearance
from vfx.segment.prompts import SubjectPrompt
from vfx.segment.spool import Spool

log = logging.getLogger(__name__)



UNLIKE_FRAMES = 3
PERSON_AGREEMENT = 0.6  # share of GrabCut's boxed subject the person model must also call person before it adds hair
# Smallest eigenvalue of the 5x5 structure tensor (cv2.cornerMinEigenVal, grey 0..255) above which
# a pixel has texture in two directions, so its flow is its own and not borrowed from its neighbours
# (flat grass takes the flow of the lawn beside it); the top fifth of a typical frame's pixels.
TEXTURED = 1e-3

PERSON_THRESHOLD = 0.75  # the person model's blurry fringe took the lit wall behind a head; its confident part is enough
# Where the previous frame's subject is carried by reliable flow, the person model need only lean to person:
# near-black hair on a dark wall scores 0.5-0.7 once the head tilts, while the wall beyond it scores 0.
PERSON_CARRIED = 0.4
# While tracking, the person model adds only pixels whose colour the key frames' subject had (P(subject | colour)
# above this): a head-and-shoulders subject's model imagined a torso below it, and the lawn there joined the
# matte a band width a frame (IoU 0.64 over 40 frames of vtest).
PERSON_COLOURS = 0.1


# a tracked frame, for the clean plate and alpha over time (see ``_seen``)
Seen = tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]
PlateDifference = Callable[[tuple[slice, slice]], np.ndarray]  # ``_plate_difference`` of one frame, for a window of it
KeyCut = tuple[np.ndarray, np.ndarray | None]  # a key frame's mask and the strands motion vouches for on it


@dataclass
class TrackState:
    """What the tracker carries from one batch of a shot to the next."""

    key_frame: int  # the first key frame
    scale: float
    keys: dict[int, SubjectPrompt] = field(default_factory=dict)  # every key frame's prompt
    previous_rgb: np.ndarray | None = None  # the last tracked frame at work size
    previous_mask: np.ndarray | None = None
    previous_thumb: np.ndarray | None = None
    lost_at: int | None = None  # frame from which the subject is not tracked (a cut, an occlusion, gone)
    velocity: tuple[float, float] = (0.0, 0.0)  # the subject's recent motion, work-size pixels a frame (x, y)
    # the last frame where it was whole (see ``_follow``) and its box there (x0, y0, x1, y1); None after a cut, so
    # a subject lost there is not looked for where its motion in the other shot would have taken it
    last_whole: tuple[int, tuple[int, int, int, int]] | None = None
    recent_area: float = 0.0  # its area over the last frames it was whole
    appearance: Appearance | None = None  # the subject on the key frames, to find it again
    key_score: float = 0.0  # how much the key frames' masks looked like the subject
    suspect: int | None = None  # a frame unlike the one before, at a batch's end: damaged or a cut?
    skipped: bool = False  # the previous frame was held as damaged
    unlike: int = 0  # consecutive tracked frames that did not look like the subject
    backward: Spool | None = field(default=None, repr=False)  # masks of the frames before the key frame
    first_frame: int = 0
    person: bool = False  # the key frames' subject is a person: the person model keeps its hair while tracking
    # key frames' cuts (mask, vouched strands) made in ``prepare`` with the next frame at hand, so a key frame at a
    # batch's end gets the same cut
    key_cuts: dict[int, KeyCut] = field(default_factory=dict)
    # the frames tracked since the last restart, newest last (at most PLATE_HISTORY), for a clean plate of the
    # world: (picture, where the subject may be, homography from its pixels to the frame before's and the subject's
    # flow to it; None on the first)
    seen: list[Seen] = field(default_factory=list)

    def person_colours(self) -> Appearance | None:
        """The key frames' appearance when the subject is a person (see ``PromptSegmenter._refine``), else None."""
        return self.appearance if self.person else None

    def backward_mask(self, number: int) -> np.ndarray:
        return self.backward.get(number - self.first_frame).astype(bool)


class PromptSegmenter(Step):
    name = "segment"

    def __init__(self, prompt: SubjectPrompt | Sequence[SubjectPrompt], feather_px: float = 4.0, work_size: int = 512,
                 refine_iterations: int = 2):
        self.prompts = (prompt,) if isinstance(prompt, SubjectPrompt) else tuple(prompt)
        self.feather_px = feather_px
        self.work_size = work_size
        self.refine_iterations = refine_iterations
        self._local = threading.local()

    # -- shot lifecycle -------------------------------------------------------------------
    def prepare(self, shot: ShotState, frames: FrameSource) -> None:
        """Find the subject on the key frame and track it back to the shot's first frame."""
        keys: dict[int, SubjectPrompt] = {}
        for prompt in self.prompts:
            prompt.check_inside(shot.width, shot.height, shot.first_frame, shot.last_frame)
            number = prompt.key_frame if prompt.key_frame is not None else shot.first_frame
            if number in keys:
                raise VfxError(f"--subject: two prompts for key frame {number}; join them with + and one @{number}")
            keys[number] = prompt
        key = min(keys)
        scale = min(1.0, self.work_size / max(shot.width, shot.height))
        state = TrackState(key_frame=key, scale=scale, keys=keys)
        shot.steps[self.name] = state
        if frames is not None:
            for number, prompt in keys.items():
                cut = self._key_cut_from(frames, number, shot.last_frame, prompt, scale)
                if cut is not None:  # else __call__ cuts it from the batch's frames
                    state.key_cuts[number] = cut
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
        cut = state.key_cuts.get(state.key_frame)
        if cut is None:
            seed_frame(state.key_frame)
            cut = self._key_cut(key_rgb, scale, state.keys[state.key_frame], None)
        mask = cut[0]
        self._learn(state, key_rgb, mask)
        state.first_frame = first
        state.backward = Spool(mask.shape, prefix="vfx-track-")
        state.backward.put(key_index, mask)
        later_rgb, later_gray = key_rgb, cv2.cvtColor(key_rgb, cv2.COLOR_RGB2GRAY)
        later_thumb = thumbnail_grey(key_rgb)
        for i in range(key_index - 1, -1, -1):
            rgb = frames.get(i)
            gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
            thumb = thumbnail_grey(rgb)
            seed_frame(first + i)
            if mask.any() and is_cut(later_thumb, thumb):
                if i > 0 and not is_cut(later_thumb, thumbnail_grey(frames.get(i - 1))):
                    log.info("frame %d looks damaged (unlike both neighbours), not a cut: the subject stays tracked", first + i)
                    state.backward.put(i, mask)
                    continue  # the next frame back is tracked from the last good one
                log.warning("shot cut after frame %d: the subject is not tracked before it", first + i)
                mask = np.zeros_like(mask)
            elif mask.any():
                mask, _ = self._propagate(mask, self._flows(gray, later_gray), rgb, state.person_colours(), later_rgb)
            state.backward.put(i, mask)
            later_rgb, later_gray, later_thumb = rgb, gray, thumb

    def finish(self, shot: ShotState) -> None:
        state = shot.steps.get(self.name)
        if isinstance(state, TrackState) and state.backward is not None:
            state.backward.close()

    # -- per batch ------------------------------------------------------------------------
    def __call__(self, batch: FrameBatch, shot: ShotState) -> FrameBatch:
        state: TrackState = shot.steps[self.name]
        smalls = map_frames(lambda rgb: self._work_image(rgb, state.scale), list(batch.originals))
        grays = map_frames(lambda rgb: cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), smalls)
        previous_gray = None if state.previous_rgb is None else cv2.cvtColor(state.previous_rgb, cv2.COLOR_RGB2GRAY)
        earlier = [previous_gray] + grays[:-1]
        earlier_rgb = [state.previous_rgb] + smalls[:-1]
        numbers = batch.indices.tolist()
        flows = map_frames(
            lambda i: self._flows(grays[i], earlier[i]) if numbers[i] > state.key_frame and earlier[i] is not None else None,
            list(range(len(batch))),
        )
        thumbs = map_frames(thumbnail_grey, smalls)
        masks, worlds, vouches = [], [], []
        own: list[Seen | None] = []  # each frame's entry in the plate's history; None when it has none
        pasts: list[list[Seen]] = []  # the history before it
        plates: list[_Plate | None] = []
        for i, number in enumerate(numbers):
            held = tracked = False
            world = vouched = plate = None
            past = state.seen
            seed_frame(number)
            if number < state.key_frame:
                mask = state.backward_mask(number)
            elif number in state.keys:
                if number != state.key_frame:
                    log.info("subject re-prompted on key frame %d%s", number,
                             f" (not tracked since frame {state.lost_at})" if state.lost_at is not None else "")
                cut = state.key_cuts.pop(number, None)
                if cut is None:  # no frame source (a live stream): the next frame is taken from the batch
                    following = smalls[i + 1] if i + 1 < len(numbers) else None
                    cut = self._key_cut(smalls[i], state.scale, state.keys[number], following)
                mask, vouched = cut
                if number != state.key_frame or state.appearance is None:
                    self._learn(state, smalls[i], mask)
                if mask.any():
                    _seen_whole(state, number, mask, restart=True)
                state.lost_at, state.suspect = None, None
            elif state.lost_at is not None:
                mask = self._find_again(state, number, smalls[i])
            elif state.suspect is not None or is_cut(state.previous_thumb, thumbs[i]):
                mask, held = self._after_jump(state, number, thumbs[i], thumbs[i + 1] if i + 1 < len(numbers) else None)
                if not held and state.lost_at is None:  # the frame after a damaged one, tracked from the last good one
                    mask, vouched = self._propagate(state.previous_mask, self._flows(grays[i], previous_gray), smalls[i],
                                                    state.person_colours(), state.previous_rgb)
                    mask = self._check(state, number, smalls[i], mask)
            else:
                # after a held (damaged) frame, track from the last good frame instead
                flow = self._flows(grays[i], previous_gray) if state.skipped else flows[i]
                neighbour = state.previous_rgb if state.skipped else earlier_rgb[i]
                to_previous = _world_homography(flow[0], state.previous_mask)
                plate = None if to_previous is None else _Plate(smalls[i], to_previous, state.seen)
                mask, vouched = self._propagate(state.previous_mask, flow, smalls[i], state.person_colours(), neighbour, plate)
                mask = self._check(state, number, smalls[i], mask)
                if plate is not None and mask.any():
                    world = _seen_before(plate, mask)
                subject_flow = _subject_flow(mask, flow[0])
                state.seen = [*state.seen[1 - PLATE_HISTORY:], _seen(smalls[i], mask, to_previous, subject_flow)]
                _follow(state, number, mask, subject_flow)
                tracked = True
            if not tracked:  # a key frame, a restart or a held (damaged) frame: the plate's history starts over
                state.seen, past = ([], []) if held else ([_seen(smalls[i], mask, None)], [])
            backward = number < state.key_frame
            own.append(None if held or backward else state.seen[-1])
            pasts.append(past)
            plates.append(plate)
            masks.append(mask)
            worlds.append(world)
            vouches.append(None if vouched is None else vouched & mask)  # the check may have emptied the mask
            state.skipped = held
            if not held:  # a damaged frame never becomes what the next frame is tracked from
                state.previous_mask, state.previous_thumb, state.previous_rgb = mask, thumbs[i], smalls[i]
                previous_gray = grays[i]
        def measured(i: int) -> tuple[np.ndarray, np.ndarray] | None:
            if own[i] is None or not masks[i].any():
                return None
            return _alpha_over_time(smalls[i], masks[i], plates[i], pasts[i], own[i], _tracked_on(own[i + 1:]))

        batch.matte = np.stack(map_frames(lambda i: self._full_matte(masks[i], batch.originals[i], worlds[i], vouches[i],
                                                                     measured(i)), list(range(len(batch)))))
        return batch

    @staticmethod
    def _after_jump(state: TrackState, number: int, thumb: np.ndarray, next_thumb: np.ndarray | None) -> tuple[np.ndarray, bool]:
        """The picture jumped at ``number`` (or just after a suspect frame): a damaged frame or a cut?

        A damaged frame differs from both neighbours while its neighbours match each other; a
        cut stays different. Returns the mask for this frame and whether it was held (damaged
        or undecided at the batch's end). The next frame settles an undecided one.
        """
        empty = np.zeros_like(state.previous_mask)
        if state.suspect is not None:
            suspect, state.suspect = state.suspect, None
            if is_cut(state.previous_thumb, thumb):
                state.lost_at, state.last_whole = suspect, None
                log.warning("shot cut at frame %d: the subject is not tracked from there on", suspect)
                return empty, False
            log.info("frame %d looks damaged (unlike both neighbours), not a cut: the subject stays tracked", suspect)
            return empty, False  # caller tracks this frame from the last good one
        if next_thumb is None:
            state.suspect = number  # decided by the next batch's first frame
            return state.previous_mask, True
        if not is_cut(state.previous_thumb, next_thumb):
            log.info("frame %d looks damaged (unlike both neighbours), not a cut: the subject stays tracked", number)
            return state.previous_mask, True
        state.lost_at, state.last_whole = number, None
        log.warning("shot cut at frame %d: the subject is not tracked from there on", number)
        return empty, False

    # -- losing the subject and finding it again -----------------------------------------
    @staticmethod
    def _learn(state: TrackState, rgb: np.ndarray, mask: np.ndarray) -> None:
        seen = Appearance.from_key_frame(rgb, mask)
        if state.appearance is None:
            state.appearance = seen
        else:
            state.appearance.add(seen)
        state.key_score = state.appearance.score(rgb, mask)
        state.person = _looks_like_a_person(rgb, mask)

    @staticmethod
    def _check(state: TrackState, number: int, rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """The tracked mask, or nothing when it shrank away (occluded, gone) or no longer looks like the subject."""
        if state.appearance is None:
            return mask
        small = mask.sum() < 0.15 * state.appearance.area
        score = state.appearance.score(rgb, mask) / max(state.key_score, 1e-6)
        state.unlike = state.unlike + 1 if score < 0.5 else 0
        # Colour alone is noisy on a small or dark subject (a few hundred pixels, unstable hue): a mask
        # that looks somewhat unlike it must stay so for a run of frames; shrinking away, or looking
        # nothing like it (slid onto an occluder), is decisive at once.
        if small or score < 0.25 or state.unlike >= UNLIKE_FRAMES:
            state.lost_at, state.unlike = number, 0
            log.info("subject lost at frame %d (%s): looking for it by its key-frame appearance", number,
                     "occluded or gone" if small else "the tracked region no longer looks like it")
            return np.zeros_like(mask)
        return mask

    def _find_again(self, state: TrackState, number: int, rgb: np.ndarray) -> np.ndarray:
        """While the subject is not tracked: a subject-coloured region of its size, cut out by GrabCut, that looks like it."""
        empty = np.zeros(rgb.shape[:2], dtype=bool)
        if state.appearance is None:
            return empty
        # where its motion took it, its colours need only match less: the place and size already say much (the best
        # of the places its motion may have taken it is kept); for a while after it went out of sight, a look-alike
        # far from there is somebody else (a twin, a passer-by)
        predicted = _where_it_went(state, number)
        found = [cut for cut in (self._cut_like(state, rgb, box, *FOUND_NEAR) for box in predicted) if cut]
        if not found:
            likely = [box for box, _ in state.appearance.candidates(rgb)[:2] if not predicted or _near(box, predicted[0])]
            found = next(([cut] for cut in (self._cut_like(state, rgb, box, *FOUND_BY_COLOUR) for box in likely) if cut), [])
        if not found:
            return empty
        _, mask = max(found, key=lambda scored: scored[0])
        log.info("subject found again at frame %d from its key-frame appearance (not tracked since frame %d)",
                 number, state.lost_at)
        state.lost_at = None
        _seen_whole(state, number, mask, restart=True)
        return mask

    def _cut_like(self, state: TrackState, rgb: np.ndarray, box: tuple[int, int, int, int], likeness: float,
                  least: float) -> tuple[float, np.ndarray] | None:
        """GrabCut in ``box`` (x, y, w, h), padded: its score and mask if it has at least ``least`` of the key frames'
        area (and at most 2.5 times) and looks like them at least ``likeness`` as much as they did, else None."""
        x, y, w, h = box
        pad_x, pad_y = int(0.15 * w) + 2, int(0.15 * h) + 2
        x0, y0 = max(0, x - pad_x), max(0, y - pad_y)
        x1, y1 = min(rgb.shape[1], x + w + pad_x), min(rgb.shape[0], y + h + pad_y)
        if x1 - x0 < 4 or y1 - y0 < 4:  # its motion took it out of the picture
            return None
        try:
            mask = self._key_mask(rgb, 1.0, SubjectPrompt(None, (x0, y0, x1 - x0, y1 - y0)))
        except VfxError:
            return None
        score = state.appearance.score(rgb, mask)
        if least <= mask.sum() / state.appearance.area <= 2.5 and score >= likeness * state.key_score:
            return score, mask
        return None

    # -- pieces ---------------------------------------------------------------------------
    @staticmethod
    def _work_image(rgb: np.ndarray, scale: float) -> np.ndarray:
        if scale == 1.0:
            return np.ascontiguousarray(rgb)
        return cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)

    def _full_matte(self, mask: np.ndarray, rgb: np.ndarray, world: np.ndarray | None = None,
                    vouched: np.ndarray | None = None,
                    measured: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """The soft matte at the frame's size. ``world``: pixels that match the world seen there a few frames ago
        (``_seen_before``); outside the hard cut they get alpha 0, which band matting's haze between strands lacked.
        ``vouched``: strands the tracker's tests vouch for (``_vouched_strands``), whose alpha band matting pulls
        toward 1."""
        height, width = rgb.shape[:2]
        hard = resize_matte(mask.astype(np.float32), width, height) > 0.5
        if measured is not None:
            measured = resize_matte(measured[0], width, height), _at_size(measured[1], width, height)
        alpha = band_matting(rgb, hard, self.feather_px, vouched=_at_size(vouched, width, height), measured=measured)
        if world is not None:
            alpha[_at_size(world, width, height) & ~hard] = 0.0
        return alpha

    def _flows(self, gray: np.ndarray, other_gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Dense flow both ways between a frame and its tracked neighbour (DIS, one per thread)."""
        dis = getattr(self._local, "dis", None)
        if dis is None:
            dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
            self._local.dis = dis
        return dis.calc(gray, other_gray, None), dis.calc(other_gray, gray, None)

    def _propagate(self, mask: np.ndarray, flows: tuple[np.ndarray, np.ndarray], rgb: np.ndarray,
                   person: Appearance | None = None, neighbour_rgb: np.ndarray | None = None,
                   plate: PlateDifference | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Carry the neighbour's mask into this frame, trusting only flow that agrees both ways; ``_refine``'s cut
        and vouched strands.

        Background uncovered behind a moving subject gets flow "from the subject" by smoothness;
        there the forward and backward flows disagree, and those pixels are left to GrabCut
        instead of being glued to the subject (which made the matte smear a trail).
        """
        back, forward = flows
        warped = _warped(mask, back) > 0.5
        if not warped.any():
            return warped, None  # the subject has left the frame
        forward_there = _warped(forward, back, cv2.BORDER_REPLICATE)
        disagreement = np.linalg.norm(back + forward_there, axis=-1)
        reliable = disagreement < 1.0 + 0.1 * np.linalg.norm(back, axis=-1)
        return self._refine(rgb, warped, reliable, person, back, neighbour_rgb, mask, plate)

    def _key_cut_from(self, frames: FrameSource, number: int, last: int, prompt: SubjectPrompt,
                      scale: float) -> KeyCut | None:
        """``_key_cut`` on key frame ``number`` read from the shot, with the frame after it; None when the
        source gives no frames (the web preview's one-frame shot)."""
        pictures = [self._work_image(rgb, scale) for _, rgb in frames(number, min(number + 1, last))]
        if not pictures:
            return None
        seed_frame(number)
        return self._key_cut(pictures[0], scale, prompt, pictures[1] if len(pictures) > 1 else None)

    def _key_cut(self, rgb: np.ndarray, scale: float, prompt: SubjectPrompt, next_rgb: np.ndarray | None) -> KeyCut:
        """The key frame's cut from the prompt, plus what only the subject's own motion to the next frame shows, and
        the strands that motion vouches for (see ``_vouched_strands``; None without a next frame)."""
        mask = self._key_mask(rgb, scale, prompt)
        if next_rgb is None or is_cut(thumbnail_grey(rgb), thumbnail_grey(next_rgb)):
            return mask, None
        return self._with_own_motion(mask, rgb, next_rgb)

    def _with_own_motion(self, mask: np.ndarray, rgb: np.ndarray, next_rgb: np.ndarray) -> KeyCut:
        """Pixels near the key frame's cut that only the subject's motion to the next frame explains, added to it
        where the cut's colours evidently missed them (see ``_where_colour_missed``). The key frame's GrabCut
        learns its background from the whole frame, so dark strands on a dark wall are background to it; tracked
        frames find them by motion, but only a few more each frame, so the first frames of a shot went without.
        The world's motion comes from textured pixels only (see ``_two_motions``)."""
        band = _band_width(mask)
        grown = cv2.dilate(mask.astype(np.uint8), disc(band)).astype(bool)
        core = cv2.erode(mask.astype(np.uint8), disc(band)).astype(bool)
        gray, next_gray = (cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) for image in (rgb, next_rgb))
        back, forward = self._flows(gray, next_gray)
        motions = _two_motions(back, core, grown, band, cv2.cornerMinEigenVal(gray, 5) > TEXTURED)
        if motions is None:
            return mask, None
        next_mask = _warped(mask, forward) > 0.5  # where the subject is on the next frame
        moved = [_shifted(next_rgb, *motion) for motion in motions]
        fits = _only_subject_fits(rgb, moved[1], _motion_residuals(rgb, moved[:1])[0])
        fits &= ~_shifted(next_mask.astype(np.uint8), *motions[1]).astype(bool)  # about to be covered by the subject
        fits &= _where_colour_missed(mask, fits, band)
        found = _grown_by_motion(mask, fits, 3 * band)
        cut = fill_holes(mask | found)
        return cut, _vouched_strands(cut, found, _from_the_world_nearby(rgb, ~cut, band))

    def _refine(self, rgb: np.ndarray, prior: np.ndarray, reliable: np.ndarray, person: Appearance | None = None,
                back: np.ndarray | None = None, neighbour_rgb: np.ndarray | None = None,
                neighbour_mask: np.ndarray | None = None,
                plate: PlateDifference | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """GrabCut in a band around the prior's edge; the prior's reliable core and far outside are fixed.
        Where the subject and the world around it move differently (``back``: flow to the neighbour
        frame ``neighbour_rgb``), textured band pixels moving with the world cannot join the subject,
        whatever their colours (a passer-by behind the subject's edge), and textured prior pixels that
        the subject's motion explains stay in it (the subject's grass against a lawn, which GrabCut's
        colour models shaved off a little more every frame). Pixels up to three band widths beyond the
        prior that only the subject's motion explains join it, grown from the prior, and those in the
        prior stay (dark strands on a dark wall, which GrabCut's colours would drop again every frame);
        ``neighbour_mask``, the neighbour frame's subject, tells background just uncovered from them.
        ``plate`` (see ``_plate_difference``): band pixels that match the world seen there a few frames ago are
        the world; pixels unlike it that move with the subject join it, grown from the prior as above.
        Every motion test compares colour (largest channel), not grey. After GrabCut, pixels that neither the core
        nor motion vouches for and whose colour is the world's nearby are taken out (``_like_the_world_nearby``:
        the wall GrabCut's smoothness filled in between strands). Returns the cut and the strands the tests vouch
        for (``_vouched_strands``; None when there was nothing to decide).
        ``person``, the key frames' appearance when the subject is a person: the person model then adds what
        GrabCut cut off (see ``_with_person``), except what the tests above called world or colours the subject
        never had."""
        band = _band_width(prior)
        kernel = disc(band)
        prior_u8 = prior.astype(np.uint8)
        grown = cv2.dilate(prior_u8, kernel).astype(bool)
        core = cv2.erode((prior & reliable).astype(np.uint8), kernel).astype(bool)
        x0, y0, x1, y1 = _padded_box(grown, 3 * band, prior.shape)
        labels = np.full((y1 - y0, x1 - x0), cv2.GC_BGD, dtype=np.uint8)
        sl = (slice(y0, y1), slice(x0, x1))
        labels[grown[sl]] = cv2.GC_PR_BGD
        labels[(prior & reliable)[sl]] = cv2.GC_PR_FGD
        labels[core[sl]] = cv2.GC_FGD
        world = np.zeros_like(prior)
        motions = _two_motions(back, core, grown, band) if back is not None else None
        if motions is not None:
            # every pixel test below reads the window only: the band and three band widths beyond it
            picture, prior_w, grown_w, core_w = rgb[sl], prior[sl], grown[sl], core[sl]
            textured = cv2.cornerMinEigenVal(cv2.cvtColor(picture, cv2.COLOR_RGB2GRAY), 5) > TEXTURED
            world[sl] = grown_w & ~prior_w & _moving_with_world(back[sl], *motions) & textured
            labels[world[sl]] = cv2.GC_BGD
            if neighbour_rgb is not None:
                moved = [_shifted(neighbour_rgb, *motion, window=sl) for motion in motions]
                residuals = _motion_residuals(picture, moved)
                subject_fits, world_fits = _which_motion_fits(*residuals)
                contrasted = textured | (local_std(picture, 3).max(axis=-1) > 0.5 * MOTION_FIT)
                labels[prior_w & subject_fits & contrasted & reliable[sl]] = cv2.GC_FGD
                # beyond the prior, what neither motion explains moves on its own: a passer-by, not the subject
                moving_alone = grown_w & ~core_w & textured & (np.minimum(*residuals) > 2 * MOTION_FIT)
                not_subject = (grown_w & ~core_w & world_fits & textured) | moving_alone
                world[sl] |= not_subject
                labels[not_subject] = cv2.GC_BGD
                fits = _only_subject_fits(picture, moved[1], residuals[0])
                if neighbour_mask is not None:  # just uncovered by the subject: the world's motion cannot explain it either
                    fits &= ~_shifted(neighbour_mask.astype(np.uint8), *motions[1], window=sl).astype(bool)
                labels[_grown_by_motion(prior_w, fits, 3 * band)] = cv2.GC_FGD
                if plate is not None:
                    difference = plate(sl)
                    seen = grown_w & ~core_w & (difference < PLATE_SAME)
                    labels[seen] = cv2.GC_BGD
                    world[sl] |= seen
                    in_front = _in_front_of_plate(difference, *residuals)
                    labels[_grown_by_motion(prior_w, in_front, 3 * band)] = cv2.GC_FGD
        refined, vouched = prior.copy(), None
        if (labels == cv2.GC_BGD).any() and (labels == cv2.GC_FGD).any():
            roi = np.ascontiguousarray(rgb[sl])
            cv2.grabCut(roi, labels, None, np.zeros((1, 65)), np.zeros((1, 65)), self.refine_iterations, cv2.GC_INIT_WITH_MASK)
            cut, confirmed = (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD), labels == cv2.GC_FGD
            from_world = _from_the_world_nearby(roi, ~cut, band)
            refined[sl] = cut & ~_like_the_world_nearby(roi, cut, confirmed, from_world, band)
            vouched = np.zeros_like(prior)
            vouched[sl] = _vouched_strands(refined[sl], confirmed & ~core[sl], from_world)
        refined = _regions_touching(fill_holes(refined), core if core.any() else prior)
        if person is not None:
            # the person model adds only what neither motion nor the plate calls world, in colours the subject had
            unlike = np.ones_like(prior)
            unlike[sl] = person.likelihood(np.ascontiguousarray(rgb[sl])) <= PERSON_COLOURS
            refined = _with_person(rgb, refined, sl, grown & ~world & ~unlike, prior & reliable)
        refined = _without_islands(refined, band)
        return refined, None if vouched is None else vouched & refined

    def _key_mask(self, rgb: np.ndarray, scale: float, prompt: SubjectPrompt) -> np.ndarray:
        """GrabCut from the user's box and/or clicks on a key frame; a boxed person keeps its hair."""
        h, w = rgb.shape[:2]
        labels = np.full((h, w), cv2.GC_BGD if prompt.box is not None else cv2.GC_PR_BGD, dtype=np.uint8)
        radius = max(2, int(0.02 * min(h, w)))
        if prompt.box is not None:
            bx, by, bw, bh = (v * scale for v in prompt.box)
            x0, y0 = int(bx), int(by)
            x1, y1 = int(np.ceil(bx + bw)), int(np.ceil(by + bh))
            labels[y0:y1, x0:x1] = cv2.GC_PR_FGD
        for px, py in prompt.points:
            cv2.circle(labels, (int(px * scale), int(py * scale)), int(radius * 4), int(cv2.GC_PR_FGD), -1)
        for px, py in prompt.points:
            cv2.circle(labels, (int(px * scale), int(py * scale)), radius, int(cv2.GC_FGD), -1)
        for px, py in prompt.negative_points:
            cv2.circle(labels, (int(px * scale), int(py * scale)), radius, int(cv2.GC_BGD), -1)
        if not (labels == cv2.GC_BGD).any() and not (labels == cv2.GC_PR_BGD).any():
            raise VfxError("--subject: the box covers the whole frame; there is no background to learn from")
        cv2.grabCut(np.ascontiguousarray(rgb), labels, None, np.zeros((1, 65)), np.zeros((1, 65)), 5, cv2.GC_INIT_WITH_MASK)
        mask = (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)
        seeds = np.zeros_like(mask)
        for px, py in prompt.points:
            seeds[min(h - 1, int(py * scale)), min(w - 1, int(px * scale))] = True
        mask = fill_holes(mask)
        if prompt.box is not None:
            in_box = np.zeros_like(mask)
            in_box[y0:y1, x0:x1] = True
            pad = max(4, int(0.05 * max(x1 - x0, y1 - y0)))  # the person model sees a little context around the box
            mask = _with_person(rgb, mask, (slice(max(0, y0 - pad), y1 + pad), slice(max(0, x0 - pad), x1 + pad)), in_box)
        if prompt.box is not None or not seeds.any():  # a box's subject is its largest region, plus what the clicks touch
            seeds |= _largest_region(mask)
        mask = _regions_touching(mask, seeds)
        if not mask.any():
            raise VfxError("--subject: nothing distinct from its surroundings was found at the prompt on the key frame")
        return mask


def _with_person(rgb: np.ndarray, mask: np.ndarray, window: tuple[slice, slice], allowed: np.ndarray,
                 carried: np.ndarray | None = None) -> np.ndarray:
    """When the subject is a person, add the person model's hair and limbs that GrabCut cut off.

    Colour alone cannot keep dark hair against a dark wall (they differ by a few levels), but
    mediapipe's selfie model (bundled in the wheel) knows what a head looks like. Its matte is
    trusted only where it agrees with GrabCut's subject (most of that subject is person), and
    only its parts inside ``allowed`` (the prompt box, or the tracked prior's band) that touch
    the subject are added. Inside ``carried`` (the previous frame's subject, carried by reliable flow) a
    weaker person score keeps it: the model's hair fades when the head tilts, and GrabCut's colours
    alone drop the dark strands it no longer vouches for.
    """
    probability = _person_probability(rgb, window)
    person = probability > PERSON_THRESHOLD
    subject = mask[window]
    if not subject.any() or (person & subject).sum() < PERSON_AGREEMENT * subject.sum():
        return mask
    if carried is not None:
        person |= (probability > PERSON_CARRIED) & carried[window]
    found = np.zeros_like(mask)
    found[window] = person
    return fill_holes(_regions_touching(mask | (found & allowed), mask))


def _person_inside(rgb: np.ndarray, window: tuple[slice, slice]) -> np.ndarray:
    return _person_probability(rgb, window) > PERSON_THRESHOLD


def _person_probability(rgb: np.ndarray, window: tuple[slice, slice]) -> np.ndarray:
    from vfx.segment.person import SELFIE  # mediapipe is imported only when a person is prompted

    with SELFIE[0].lend() as model:
        return model.process(np.ascontiguousarray(rgb[window])).segmentation_mask


def _looks_like_a_person(rgb: np.ndarray, mask: np.ndarray) -> bool:
    if not mask.any():
        return False
    x0, y0, x1, y1 = _padded_box(mask, 8, mask.shape)
    window = (slice(y0, y1), slice(x0, x1))
    return bool((_person_inside(rgb, window) & mask[window]).sum() >= PERSON_AGREEMENT * mask.sum())


# A pixel's motion is decided when the neighbour frame shifted by one motion matches its grey level this
# many levels (0..255) better than shifted by the other, and at most half as far off: above noise and
# the odd level of re-encoding, far below the difference between two textures.
MOTION_FIT = 8.0


def _band_width(mask: np.ndarray) -> int:
    """Width of the band around a subject's edge that tracking re-decides, in pixels."""
    return int(np.clip(0.06 * np.sqrt(float(mask.sum())), 3, 20))


def _two_motions(back: np.ndarray, core: np.ndarray, grown: np.ndarray, band: int,
                 textured: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """The subject's and the world's motion to the neighbour frame: medians of the flow in the subject's
    core and in a ring of the world beyond the band; None when they are within a pixel of each other, where
    motion cannot tell them apart. Given ``textured``, the world's motion is that of the ring's textured pixels,
    or when the ring is a flat wall all round, of every textured pixel beyond the band: a flat wall's flow is
    borrowed from the subject beside it (Megamind.avi's dark wall moved with the subject by the flow)."""
    ring = cv2.dilate(grown.astype(np.uint8), disc(2 * band)).astype(bool) & ~grown
    if textured is not None:
        moving = ring & textured
        if moving.sum() < 50:  # a flat wall all round: the camera's motion from the textured world further off
            moving = textured & ~grown
        ring = moving if moving.sum() >= 50 else ring
    if core.sum() < 50 or ring.sum() < 50:
        return None
    subject, world = np.median(back[core], axis=0), np.median(back[ring], axis=0)
    if float(np.linalg.norm(subject - world)) < 1.0:
        return None
    return subject, world


def _moving_with_world(back: np.ndarray, subject: np.ndarray, world: np.ndarray) -> np.ndarray:
    """Pixels whose flow clearly follows the world's motion rather than the subject's. Forcing pixels
    whose flow follows the subject into it was tried too: flow is smooth across the edge, and it cost
    IoU (the background between hair strands and flat road beside the subject joined it)."""
    gap = float(np.linalg.norm(subject - world))
    to_subject = np.linalg.norm(back - subject, axis=-1)
    return (np.linalg.norm(back - world, axis=-1) < 0.25 * gap) & (to_subject > 0.75 * gap)


def _shifted(image: np.ndarray, dx: float, dy: float, window: tuple[slice, slice] | None = None) -> np.ndarray:
    """``image`` moved by (dx, dy): what lands on each pixel from the neighbour frame under that motion; only
    ``window``'s pixels of it when given (the same values as the whole picture's there)."""
    h, w = image.shape[:2]
    x0, y0 = 0, 0
    if window is not None:
        (rows, cols) = window
        x0, y0, w, h = cols.start, rows.start, cols.stop - cols.start, rows.stop - rows.start
    shift = np.float32([[1, 0, x0 + dx], [0, 1, y0 + dy]])
    return cv2.warpAffine(image, shift, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)


def _motion_residuals(rgb: np.ndarray, moved: list[np.ndarray]) -> list[np.ndarray]:
    """float32 |rgb - each of ``moved``| (the neighbour frame shifted by the subject's motion, by the world's),
    largest channel. Largest channel, not grey: dark brown strands on a dark red wall differ by 5 grey levels and
    22 in red."""
    return [cv2.absdiff(rgb, image).max(axis=-1).astype(np.float32) for image in moved]


def _which_motion_fits(to_subject: np.ndarray, to_world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixels that the neighbour frame shifted by the subject's motion explains clearly better than
    shifted by the world's, and the reverse (``_motion_residuals``). A direct photometric test of the two
    motions, pixel by pixel: unlike the flow, it borrows nothing from the neighbours (a 5x5 window filled
    the gaps between hair strands). Flat pixels fit both; callers keep only textured ones."""
    subject_fits = (to_subject < 0.5 * to_world) & (to_world - to_subject > MOTION_FIT)
    world_fits = (to_world < 0.5 * to_subject) & (to_subject - to_world > MOTION_FIT)
    return subject_fits, world_fits


# The world's motion is one median translation of the ring's flow (a zooming camera moves it a little
# differently across the ring), so a world pixel may land up to about this many pixels off: its residual is
# forgiven that much of the local grey gradient. Taking the best of every shift within a pixel instead found
# thin strands' own pixels when the subject and world move only 2-3 px apart (dark strands on a dark wall stayed out).
WORLD_SLACK = 0.5


def _only_subject_fits(rgb: np.ndarray, moved_by_world: np.ndarray, to_subject: np.ndarray) -> np.ndarray:
    """Pixels the neighbour frame shifted by the subject's motion matches (``to_subject``, see ``_motion_residuals``,
    within ``MOTION_FIT`` levels) and the world's motion (``moved_by_world``), give or take ``WORLD_SLACK``, clearly
    does not: strands whose colour is the background's (dark hair on a dark wall), which GrabCut's colour models
    drop. Flat pixels (3x3 standard deviation within half of ``MOTION_FIT``) are left out: a dark coat of a
    passer-by matches wherever any motion puts it. Every difference is the largest channel's."""
    image = rgb.astype(np.float32)
    moved = moved_by_world.astype(np.float32)
    gy, gx = np.gradient(moved, axis=(0, 1))
    to_world = np.maximum(np.abs(image - moved) - WORLD_SLACK * np.hypot(gx, gy), 0.0).max(axis=-1)
    contrast = local_std(image, 3).max(axis=-1)
    return ((to_subject < 0.5 * to_world) & (to_world - to_subject > MOTION_FIT) & (to_subject < MOTION_FIT)
            & (contrast > 0.5 * MOTION_FIT))


# The outline is split into this many sectors around the subject's centre to tell where colour missed what motion finds.
SECTORS = 16


def _where_colour_missed(mask: np.ndarray, fits: np.ndarray, band: int) -> np.ndarray:
    """The sectors (around the mask's centre) where motion finds at least as many subject pixels beyond the
    cut as inside its edge band. There the cut's colours missed a part of the subject (a whole fan of dark
    strands); elsewhere what motion finds beyond it is a few sparse strands colour had left out, and taking
    them made the outline fill the background between them on the frames after."""
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    grid_y, grid_x = np.mgrid[0:h, 0:w]
    angle = np.arctan2(grid_y - ys.mean(), grid_x - xs.mean())
    sector = ((angle + np.pi) / (2 * np.pi) * SECTORS).astype(int) % SECTORS
    edge = mask & ~cv2.erode(mask.astype(np.uint8), disc(band)).astype(bool)
    inside = np.bincount(sector[fits & edge], minlength=SECTORS)
    beyond = np.bincount(sector[fits & ~mask], minlength=SECTORS)
    return (beyond >= np.maximum(inside, 1))[sector]


# A pixel of the cut is the world seen between strands when its colour is within WALL_LIKE levels (largest channel)
# of the world's nearby and at least WALL_MARGIN levels nearer to it than to the subject's nearby.
WALL_LIKE = 12.0
WALL_MARGIN = 4.0
# Strands whose colour is WALL_LIKE to this many levels from the world's nearby are vouched for (see
# ``_vouched_strands``); beyond it the picture alone separates them (vtest's pavement: 75 levels).
VOUCH_BELOW = 40.0


def _local_mean(rgb: np.ndarray, where: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """float32 colour of the ``where`` pixels around each pixel (Gaussian-weighted over ``sigma``), and their weight
    there (0 where none are near)."""
    weight = cv2.GaussianBlur(where.astype(np.float32), (0, 0), sigma)
    total = cv2.GaussianBlur(rgb.astype(np.float32) * where[..., None], (0, 0), sigma)
    return total / np.maximum(weight, 1e-6)[..., None], weight


def _from_the_world_nearby(rgb: np.ndarray, world: np.ndarray, band: int) -> np.ndarray:
    """float32 levels (largest channel) each pixel's colour is from the ``world`` pixels' within half a band width
    or so; inf where there are none."""
    colour, near = _local_mean(rgb, world, 0.5 * band)
    return np.where(near > 0.02, np.abs(rgb.astype(np.float32) - colour).max(axis=-1), np.inf).astype(np.float32)


def _like_the_world_nearby(rgb: np.ndarray, cut: np.ndarray, subject: np.ndarray, from_world: np.ndarray,
                           band: int) -> np.ndarray:
    """Pixels of ``cut``, not in ``subject`` (its sure pixels: the core and what motion confirmed), whose colour is the
    world's nearby (``from_world``, see ``_from_the_world_nearby``) rather than the subject's.

    GrabCut's smoothness fills the gaps between thin strands that differ little from the wall behind them, and the
    motion tests cannot empty them: seen through a fan that moves with the subject, the flat wall between strands
    moves with it too. Their colour is the wall's, the strands' is not (22 levels in red on Megamind.avi)."""
    subject_colour, near_subject = _local_mean(rgb, subject, 0.5 * band)
    from_subject = np.abs(rgb.astype(np.float32) - subject_colour).max(axis=-1)
    return (cut & ~subject & (near_subject > 0.02) & (from_world < WALL_LIKE)
            & (from_world + WALL_MARGIN < from_subject))


def _vouched_strands(cut: np.ndarray, confirmed: np.ndarray, from_world: np.ndarray) -> np.ndarray:
    """The cut's thin parts (outside its body opened by 2 px) that motion confirmed and whose colour is WALL_LIKE to
    VOUCH_BELOW levels from the world's nearby: strands band matting alone fades, because on a dark wall no colour
    line ties them to the subject's core (mean alpha 0.4 on the strands it was given on Megamind.avi)."""
    body = cv2.dilate(cv2.morphologyEx(cut.astype(np.uint8), cv2.MORPH_OPEN, disc(2)), disc(1)).astype(bool)
    return cut & confirmed & ~body & (from_world >= WALL_LIKE) & (from_world < VOUCH_BELOW)


def _grown_by_motion(prior: np.ndarray, subject_fits: np.ndarray, reach: int) -> np.ndarray:
    """Pixels in the prior or within ``reach`` of it that the subject's motion explains, connected to the
    prior through such pixels, one-pixel gaps bridged."""
    zone = cv2.dilate(prior.astype(np.uint8), disc(reach)).astype(bool)
    found = subject_fits & zone
    bridged = cv2.dilate(found.astype(np.uint8), disc(1)).astype(bool)  # a strand's anti-aliased pixel may miss the test
    return _regions_touching(prior | bridged, prior) & found


PLATE_FRAMES = (3, 6, 9, 12)  # how many frames back the world is looked at for the clean plate
PLATE_HISTORY = max(PLATE_FRAMES)
PLATE_SAME = 8.0  # grey levels (largest channel) within which a pixel is the world seen there before
PLATE_DIFFERENT = 20.0  # ... and beyond which it is something in front of that world
PLATE_REGISTERED = 4.0  # levels (median) by which the world in sight may differ from a plate frame's to use its colours


def _at_size(pixels: np.ndarray | None, width: int, height: int) -> np.ndarray | None:
    """A work-size pixel set (bool) at the frame's size, pixel for pixel (nearest); None stays None."""
    if pixels is None or pixels.shape == (height, width):
        return pixels
    return cv2.resize(pixels.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST).astype(bool)


def _world_homography(back: np.ndarray, previous_mask: np.ndarray) -> np.ndarray | None:
    """3x3 map from this frame's pixels to the previous frame's, fitted (RANSAC) to the flow away from the
    subject; None when too little of the frame is away from it or the world does not move as one plane."""
    if not previous_mask.any():
        return None
    h, w = previous_mask.shape
    x0, y0, x1, y1 = _padded_box(previous_mask, 3 * _band_width(previous_mask) + 8, (h, w))  # 8: the subject's move
    ys, xs = np.mgrid[0:h:6, 0:w:6]
    away = (xs < x0) | (xs >= x1) | (ys < y0) | (ys >= y1)
    if away.sum() < 50:
        return None
    here = np.stack([xs[away], ys[away]], -1).astype(np.float32)
    homography, inliers = cv2.findHomography(here, here + back[ys[away], xs[away]], cv2.RANSAC, 1.0)
    if homography is None or inliers.sum() < 0.5 * len(here):
        return None
    return homography


def _seen(picture: np.ndarray, mask: np.ndarray, to_previous: np.ndarray | None,
          subject_flow: np.ndarray | None = None) -> Seen:
    """A tracked frame for the plate: the subject may be up to three band widths beyond its mask (missed strands)."""
    reach = 2 * (3 * _band_width(mask) + 1) + 1
    covered = cv2.dilate(mask.astype(np.uint8), np.ones((reach, reach), np.uint8))  # a square: fast
    return picture, covered, to_previous, subject_flow


def _plate_views(to_previous: np.ndarray, seen: list[Seen], window: tuple[slice, slice]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The world as seen ``PLATE_FRAMES`` frames ago, newest first, moved into ``window`` of this frame along the
    world's homographies (``to_previous``: this frame's to the last one's): (picture, where the subject hid it)."""
    rows, cols = window
    h, w = rows.stop - rows.start, cols.stop - cols.start
    chain = to_previous @ np.array([[1, 0, cols.start], [0, 1, rows.start], [0, 0, 1]], np.float64)  # window -> frame
    for back, (picture, covered, earlier, _) in enumerate(reversed(seen), start=1):
        if back in PLATE_FRAMES:
            world = cv2.warpPerspective(picture, chain, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
            hidden = cv2.warpPerspective(covered, chain, (w, h), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
                                         borderMode=cv2.BORDER_CONSTANT, borderValue=1)
            yield world, hidden > 0
        if earlier is None:
            break
        chain = earlier @ chain


def _plate_difference(rgb: np.ndarray, to_previous: np.ndarray, seen: list[Seen], window: tuple[slice, slice]) -> np.ndarray:
    """float32, ``window`` of the frame: how far each pixel is from the world as it was seen there ``PLATE_FRAMES``
    frames ago (largest channel difference; the least over those frames), NaN where the subject was in the way on all.

    The subject moves over the world, so a few frames back the world behind its edge was in sight: a clean
    plate, moved here along the world's homographies. Colour cannot tell dark strands from a dark wall; the
    wall as it looked a moment before, without them, can."""
    here = np.ascontiguousarray(rgb[window])
    nearest = np.full(here.shape[:2], np.nan, np.float32)
    for world, hidden in _plate_views(to_previous, seen, window):
        difference = cv2.absdiff(here, world).max(axis=-1).astype(np.float32)
        difference[hidden] = np.nan
        nearest = np.fmin(nearest, difference)
    return nearest


def _plate_colours(rgb: np.ndarray, to_previous: np.ndarray, seen: list[Seen], window: tuple[slice, slice],
                   covered: np.ndarray) -> np.ndarray:
    """float32 colours of the world in ``window`` from the latest of the plate's frames that saw it, NaN where none
    did. A frame is left out when the world in sight on it and on this one (``covered``: where this frame's subject
    may be) differs by more than ``PLATE_REGISTERED`` levels (median) once brought together: the world moved on
    its own there (a face turning behind the subject) or the homographies' chain drifted."""
    here = np.ascontiguousarray(rgb[window])
    colours = np.full(here.shape, np.nan, np.float32)
    for world, hidden in _plate_views(to_previous, seen, window):
        in_sight = ~hidden & ~covered[window]
        if in_sight.sum() < 50 or float(np.median(cv2.absdiff(here, world).max(axis=-1)[in_sight])) > PLATE_REGISTERED:
            continue
        fresh = np.isnan(colours[..., 0]) & ~hidden
        colours[fresh] = world[fresh]
    return colours


class _Plate:
    """``_plate_difference`` of one frame, for windows of it. Tracking asks for the band's window and then for the
    final mask's, which mostly lies inside it: such a window is cut from the last one rather than warped again."""

    def __init__(self, rgb: np.ndarray, to_previous: np.ndarray, seen: list[Seen]):
        self.rgb, self.to_previous, self.seen = rgb, to_previous, seen
        self.window: tuple[slice, slice] | None = None
        self.difference: np.ndarray | None = None

    def __call__(self, window: tuple[slice, slice]) -> np.ndarray:
        if self.window is not None and all(outer.start <= inner.start and inner.stop <= outer.stop
                                           for inner, outer in zip(window, self.window)):
            (rows, cols), (top, left) = window, (self.window[0].start, self.window[1].start)
            return self.difference[rows.start - top:rows.stop - top, cols.start - left:cols.stop - left]
        self.window, self.difference = window, _plate_difference(self.rgb, self.to_previous, self.seen, window)
        return self.difference

    def colours(self, window: tuple[slice, slice], covered: np.ndarray, reach: int) -> np.ndarray:
        """``_plate_colours`` in ``window``, judged on the world in sight up to ``reach`` beyond where the subject
        may be (``covered``)."""
        x0, y0, x1, y1 = _padded_box(covered, reach, covered.shape)
        rows, cols = window
        top, left = min(y0, rows.start), min(x0, cols.start)
        around = (slice(top, max(y1, rows.stop)), slice(left, max(x1, cols.stop)))
        colours = _plate_colours(self.rgb, self.to_previous, self.seen, around, covered)
        return colours[rows.start - top:rows.stop - top, cols.start - left:cols.stop - left]


def _seen_before(plate: PlateDifference, mask: np.ndarray) -> np.ndarray:
    """Pixels around the subject within ``PLATE_SAME`` levels of the world seen there a few frames ago."""
    window = _edge_window(mask)
    world = np.zeros(mask.shape, bool)
    world[window] = plate(window) < PLATE_SAME  # NaN (no plate) compares False
    return world


def _edge_window(mask: np.ndarray) -> tuple[slice, slice]:
    """The subject's box grown by three band widths: where its edge is decided."""
    x0, y0, x1, y1 = _padded_box(mask, 3 * _band_width(mask), mask.shape)
    return slice(y0, y1), slice(x0, x1)


# other frames whose pixels, moved with the subject, measure alpha (grey strands over vtest, before the misfit test:
# 0.099 with 6, 0.081 with 12); the plate's history keeps at most as many past ones
OVER_TIME_FRAMES = PLATE_HISTORY
OVER_TIME_SPREAD = 12.0  # levels (root mean square) the world behind a pixel must vary over them
OVER_TIME_MISFIT = 6.0  # levels (root mean square) the colours may stray from that fit
# Beyond the hard cut the measurement adds only alpha below this: opaque subject the tracker missed is the tracker's
# to find, and a face talking behind the subject gives colours that stay put while the world "behind" them changes,
# which reads as opaque (a cut-out over Megamind.avi took blobs of cheek and mouth: worst-frame IoU 0.959 -> 0.927).
OVER_TIME_OPAQUE = 0.95


def _alpha_over_time(rgb: np.ndarray, mask: np.ndarray, plate: _Plate | None, past: list[Seen], own: Seen,
                     future: list[Seen]) -> tuple[np.ndarray, np.ndarray] | None:
    """Alpha around the subject's edge measured over other frames, and where it holds (see ``band_matting``'s
    ``measured``); None with fewer than two other frames.

    Moved with the subject, a pixel of the subject's edge keeps its colour F and its alpha while the world slides
    behind it: I_k = alpha F + (1 - alpha) B_k on each frame k. The world behind it on those frames is known where
    that spot of the world is in sight on this frame (``own``: its picture and where the subject may be) or in the
    clean plate. So 1 - alpha is the slope of I_k over B_k, however alike F and the world are in colour (grey
    strands over a grey road). It holds where the world behind the pixel varied over the frames. The frames are
    the last ``OVER_TIME_FRAMES`` tracked (``past``, newest last), or when fewer, the next ones (``future``, the
    batch's frames tracked on from this one). Beyond the hard cut (``mask``) it holds only below
    ``OVER_TIME_OPAQUE``."""
    others = _subject_aligned(past, own, future)
    if len(others) < 2:
        return None
    window = _edge_window(mask)
    rows, cols = window
    h, w = rows.stop - rows.start, cols.stop - cols.start
    reach, covered = 3 * _band_width(mask), own[1] > 0
    behind_now = rgb.astype(np.float32)
    behind_now[covered] = np.nan
    plate_colours = np.full((h, w, 3), np.nan, np.float32) if plate is None else plate.colours(window, covered, reach)
    behind_now[window] = np.where(np.isnan(behind_now[window]), plate_colours, behind_now[window])
    pictures, behinds = [rgb[window].astype(np.float32)], [plate_colours]
    offset = np.array([[1, 0, cols.start], [0, 1, rows.start], [0, 0, 1]], np.float64)
    for picture, its_covered, shift, to_here, to_then in others:
        moved = np.array([[1, 0, shift[0]], [0, 1, shift[1]], [0, 0, 1]], np.float64)
        to_now = to_here @ moved @ offset  # this window's pixels -> where the world behind them then is now
        region = _bounds(to_now, w, h, 2 * reach, rgb.shape[:2])
        if region is None:
            continue
        source = _where_the_world_held(rgb, behind_now, picture, its_covered, to_then, region, reach)
        to_now = np.array([[1, 0, -region[1].start], [0, 1, -region[0].start], [0, 0, 1]], np.float64) @ to_now
        pictures.append(_shifted(picture, *shift, window=window).astype(np.float32))
        behinds.append(cv2.warpPerspective(source, to_now, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                           borderMode=cv2.BORDER_CONSTANT, borderValue=(np.nan,) * 3))
    alpha, holds = np.zeros(mask.shape, np.float32), np.zeros(mask.shape, bool)
    alpha[window], holds[window] = _slope_alpha(pictures, behinds)
    holds &= mask | (alpha < OVER_TIME_OPAQUE)  # beyond the cut, only what is partly see-through
    return alpha, holds


def _bounds(to_now: np.ndarray, w: int, h: int, pad: int, shape: tuple[int, int]) -> tuple[slice, slice] | None:
    """The frame's part that a w x h window's pixels land in under ``to_now``, grown by ``pad``; None when that is
    outside the frame."""
    corners = cv2.perspectiveTransform(np.float32([[[0, 0]], [[w, 0]], [[0, h]], [[w, h]]]), to_now).reshape(-1, 2)
    x0, y0 = np.maximum(np.floor(corners.min(axis=0)).astype(int) - pad, 0)
    x1, y1 = np.minimum(np.ceil(corners.max(axis=0)).astype(int) + pad, (shape[1], shape[0]))
    if x1 <= x0 or y1 <= y0:
        return None
    return slice(y0, y1), slice(x0, x1)


WORLD_MOVED = 10.0  # levels: mean difference of the world in sight nearby on two frames brought together
WORLD_IN_SIGHT = 0.05  # ... over at least this share of the pixels nearby
WORLD_STEP = 4  # judged on every 4th pixel across and down


def _where_the_world_held(rgb: np.ndarray, behind_now: np.ndarray, picture: np.ndarray, covered: np.ndarray,
                          to_then: np.ndarray, region: tuple[slice, slice], reach: int) -> np.ndarray:
    """``behind_now`` in ``region``, NaN where the world did not hold still between that other frame (``picture``,
    ``covered`` by its subject; ``to_then`` maps this frame's pixels to its) and this one: where the world in sight
    on both within ``2 * reach`` differs by more than ``WORLD_MOVED`` levels on average once brought together, or
    too little of it is in sight to tell. There the world moved on its own (a face turning behind the subject) or
    the homographies' chain drifted, and the world behind the subject then is not what is in sight now. Judged on
    every ``WORLD_STEP``-th pixel: an average over so wide a neighbourhood needs no more."""
    rows, cols = region
    source = behind_now[region].copy()
    h, w = source.shape[:2]
    sampled = (slice(None, None, WORLD_STEP), slice(None, None, WORLD_STEP))
    here = rgb[region][sampled]
    to_sampled = to_then @ np.array([[WORLD_STEP, 0, cols.start], [0, WORLD_STEP, rows.start], [0, 0, 1]], np.float64)
    size = here.shape[1::-1]
    then = cv2.warpPerspective(picture, to_sampled, size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    hidden = cv2.warpPerspective(covered, to_sampled, size, flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=1)
    in_sight = (~np.isnan(source[sampled][..., 0]) & (hidden == 0)).astype(np.float32)
    difference = cv2.absdiff(here, then).max(axis=-1).astype(np.float32) * in_sight
    box = (2 * (2 * reach // WORLD_STEP) + 1,) * 2
    share = cv2.boxFilter(in_sight, -1, box)
    held = (share >= WORLD_IN_SIGHT) & (cv2.boxFilter(difference, -1, box) <= WORLD_MOVED * np.maximum(share, 1e-3))
    held = cv2.resize(held.astype(np.uint8), None, fx=WORLD_STEP, fy=WORLD_STEP, interpolation=cv2.INTER_NEAREST)
    source[~held[:h, :w].astype(bool)] = np.nan
    return source


def _subject_aligned(past: list[Seen], own: Seen,
                     future: list[Seen]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Other frames for ``_alpha_over_time``: (picture, where its subject may be, where this frame's subject pixel x
    is on it minus x, homographies from its pixels to this frame's and back), the past ones first; they end where
    the chain of homographies cannot be inverted."""
    others = []
    to_then, shift, motion = own[2], np.zeros(2), own[3]
    for picture, covered, earlier, its_flow in reversed(past):
        if to_then is None or motion is None or len(others) == OVER_TIME_FRAMES:
            break
        to_here = _inverted(to_then)
        if to_here is None:
            break
        shift = shift + motion
        others.append((picture, covered, shift, to_here, to_then))
        to_then, motion = None if earlier is None else earlier @ to_then, its_flow
    to_here, shift = np.eye(3), np.zeros(2)
    for picture, covered, to_previous, its_flow in future:
        if to_previous is None or its_flow is None or len(others) == OVER_TIME_FRAMES:
            break
        to_here, shift = to_here @ to_previous, shift - its_flow
        to_then = _inverted(to_here)
        if to_then is None:
            break
        others.append((picture, covered, shift, to_here, to_then))
    return others


def _inverted(homography: np.ndarray) -> np.ndarray | None:
    """The inverse of a 3x3 homography, or None when it is (nearly) singular."""
    if abs(np.linalg.det(homography)) < 1e-6:
        return None
    return np.linalg.inv(homography)


def _slope_alpha(colours: list[np.ndarray], worlds: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """1 - the least-squares slope of each pixel's colours over the world behind it (one picture per frame, NaN
    where the world is not known), and where that fit holds: the world varied by ``OVER_TIME_SPREAD`` over three
    frames or more and the colours stray from the fit by at most ``OVER_TIME_MISFIT`` (the subject's motion is
    not a shift there, or the world itself changed)."""
    shape = worlds[0].shape[:2]
    count, world_sum, colour_sum = np.zeros(shape, np.float32), np.zeros(shape + (3,), np.float32), np.zeros(shape + (3,), np.float32)
    world_squares, products, colour_squares = (np.zeros(shape, np.float32) for _ in range(3))
    for colour, world in zip(colours, worlds):
        valid = ~np.isnan(world[..., 0])  # an unknown world pixel is NaN in every channel
        world = np.nan_to_num(world - 128.0)  # centred: float32 sums of squares stay exact enough
        colour = (colour - 128.0) * valid[..., None]
        count += valid
        world_sum += world
        colour_sum += colour
        world_squares += np.einsum("hwc,hwc->hw", world, world)
        products += np.einsum("hwc,hwc->hw", world, colour)
        colour_squares += np.einsum("hwc,hwc->hw", colour, colour)
    frames = np.maximum(count, 1.0)
    spread = world_squares - np.einsum("hwc,hwc->hw", world_sum, world_sum) / frames
    together = products - np.einsum("hwc,hwc->hw", world_sum, colour_sum) / frames
    slope = together / np.maximum(spread, 1e-3)
    misfit = colour_squares - np.einsum("hwc,hwc->hw", colour_sum, colour_sum) / frames - slope * together
    holds = (count >= 3) & (spread >= 3 * OVER_TIME_SPREAD ** 2 * count) & (misfit <= 3 * OVER_TIME_MISFIT ** 2 * count)
    return np.clip(1.0 - slope, 0.0, 1.0).astype(np.float32), holds


def _in_front_of_plate(plate: np.ndarray, to_subject: np.ndarray, to_world: np.ndarray) -> np.ndarray:
    """Pixels unlike the world seen there before (``plate``) that the neighbour frame shifted by the subject's
    motion explains, and by the world's motion clearly less well (``_motion_residuals``, same window). The
    second test keeps out what changed in the world itself: a talking face behind the subject is unlike its
    plate, but it moves with the world."""
    return (plate > PLATE_DIFFERENT) & (to_subject < MOTION_FIT) & (to_world - to_subject > 0.5 * MOTION_FIT)


def _warped(image: np.ndarray, flow: np.ndarray, border: int = cv2.BORDER_CONSTANT) -> np.ndarray:
    """``image`` (a mask or a flow field) sampled where ``flow`` points from each pixel."""
    h, w = flow.shape[:2]
    grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(image.astype(np.float32), grid_x + flow[..., 0], grid_y + flow[..., 1], cv2.INTER_LINEAR,
                     borderMode=border, borderValue=0)


def seed_frame(number: int) -> None:
    """Seed this thread's OpenCV RNG (GrabCut's k-means start) from the frame number, so a frame's
    matte depends on the shot alone, not on what the thread ran before: service workers reuse
    threads, and a resumed tracking pass starts mid-shot, yet both must match `vfx run`."""
    cv2.setRNGSeed(number + 1)


# How long after the subject went out of sight (occluded, not at a cut) it is first looked for where its last
# motion would have taken it, before anywhere its colours are.
FIND_NEAR_FRAMES = 25
# How much a region must look like the key frames' subject (as ``_check`` scores it), and the least part of its
# key-frame area it must have, to be taken for it: where its motion took it (it may be coming back into sight: a
# part would be tracked from, and grow back slowly), and anywhere its colours are.
FOUND_NEAR, FOUND_BY_COLOUR = (0.6, 0.7), (0.8, 0.4)


def _follow(state: TrackState, number: int, mask: np.ndarray, subject_flow: np.ndarray | None) -> None:
    """Update where the subject was last whole (at least four fifths of its recent area: it may shrink slowly as it
    walks away, not at once) and, on such frames, its motion (``subject_flow``, see ``_subject_flow``), which an
    occluder eating into the outline does not move as it moves the outline's centre."""
    if subject_flow is not None and _seen_whole(state, number, mask):
        dx, dy = -subject_flow
        vx, vy = state.velocity
        state.velocity = (0.5 * vx + 0.5 * float(dx), 0.5 * vy + 0.5 * float(dy))


def _tracked_on(entries: list[Seen | None]) -> list[Seen]:
    """The leading frames of ``entries`` each tracked from the one before (history entries with a homography)."""
    tracked = []
    for entry in entries:
        if entry is None or entry[2] is None:
            break
        tracked.append(entry)
    return tracked


def _subject_flow(mask: np.ndarray, back: np.ndarray) -> np.ndarray | None:
    """The subject's motion to the frame before: the median of its core's flow (``back``); None without a subject."""
    if not mask.any():
        return None
    core = cv2.erode(mask.astype(np.uint8), disc(_band_width(mask))).astype(bool)
    return np.median(back[core if core.any() else mask], axis=0)


def _seen_whole(state: TrackState, number: int, mask: np.ndarray, restart: bool = False) -> bool:
    """Note the subject's box if it is whole on this frame (or tracking restarts here); whether it was."""
    area = float(mask.sum())
    whole = restart or area >= 0.8 * state.recent_area
    if whole:
        state.last_whole = number, _padded_box(mask, 0, mask.shape)
    state.recent_area = area if restart else 0.5 * state.recent_area + 0.5 * area
    if restart:
        state.velocity = (0.0, 0.0)
    return whole


def _where_it_went(state: TrackState, number: int) -> list[tuple[int, int, int, int]]:
    """Boxes (x, y, w, h) where the subject may be by frame ``number`` while out of sight: where its last motion takes
    it, half as far, and where it was last whole."""
    if state.last_whole is None or state.lost_at is None or number - state.lost_at > FIND_NEAR_FRAMES:
        return []
    seen, (x0, y0, x1, y1) = state.last_whole
    places = []
    for share in (1.0, 0.5, 0.0):  # it may have slowed or stopped behind what hid it
        dx, dy = (round(share * v * (number - seen)) for v in state.velocity)
        if (x0 + dx, y0 + dy, x1 - x0, y1 - y0) not in places:
            places.append((x0 + dx, y0 + dy, x1 - x0, y1 - y0))
    return places


def _near(box: tuple[int, int, int, int], expected: tuple[int, int, int, int]) -> bool:
    """Whether ``box``'s centre is within two of ``expected``'s sizes of its centre (boxes as x, y, w, h)."""
    (x, y, w, h), (ex, ey, ew, eh) = box, expected
    return abs(x + w / 2 - ex - ew / 2) <= 2 * ew and abs(y + h / 2 - ey - eh / 2) <= 2 * eh


def _padded_box(mask: np.ndarray, pad: int, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    h, w = shape
    return max(0, xs.min() - pad), max(0, ys.min() - pad), min(w, xs.max() + pad + 1), min(h, ys.max() + pad + 1)


def _without_islands(mask: np.ndarray, band: int) -> np.ndarray:
    """``mask`` less its small regions (under a tenth of the largest) lying over two band widths off the largest:
    what a passer-by who brushed the subject leaves behind when it walks off, not a strand of the subject's."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 2:
        return mask
    areas = stats[:, cv2.CC_STAT_AREA]
    largest = 1 + int(np.argmax(areas[1:]))
    near = cv2.dilate((labels == largest).astype(np.uint8), disc(2 * band)).astype(bool)
    keep = areas >= 0.1 * areas[largest]
    keep[np.unique(labels[near])] = True
    return keep[labels] & mask


def _largest_region(mask: np.ndarray) -> np.ndarray:
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count < 2:
        return mask.copy()
    return labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))


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
