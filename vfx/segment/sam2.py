"""SAM 2.1 for video: transformers' ``Sam2VideoModel`` streamed one frame at a time.

The subject is prompted (box and/or points) on its key frames; every other frame is segmented
from the model's memory of the subject (the last ``num_maskmem`` frames' mask memories, the
prompted frames', and recent object pointers), so an occluded subject that comes back is found
again by the model itself and frames where it is absent get an empty matte.

The inference session of transformers keeps every processed frame and every frame's output;
``prune`` drops what the model can no longer read, so memory stays bounded however long the
shot. The image encoder runs once per batch on all the batch's frames; the memory part then
runs frame by frame. Frames before the first key frame are tracked backward in ``prepare``
(their masks wait in a temporary file, as in the SAM v1 backend).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch
from transformers import Sam2VideoModel, Sam2VideoProcessor
from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoInferenceSession

from vfx.devices import chunk_limit, run_chunked, torch_dtype
from vfx.errors import VfxError
from vfx.frames import FrameBatch, FrameSource, ShotState, Step, require_frames
from vfx.matte import soft_edge
from vfx.models import ModelStore
from vfx.segment.prompts import SubjectPrompt
from vfx.segment.spool import Spool

log = logging.getLogger(__name__)

OBJECT_ID = 1  # one subject per step; several subjects are several steps (vfx.segment.subjects)


@dataclass
class Sam2:
    """A loaded SAM 2 video model with its processor."""

    name: str
    model: Sam2VideoModel
    processor: Sam2VideoProcessor
    device: str

    @property
    def dtype(self) -> torch.dtype:
        return torch_dtype(self.device)


def load_sam2(store: ModelStore, name: str, device: str) -> Sam2:
    """Verify every file's hash, then load the transformers-format folder (fp16 on CUDA)."""
    entry = store.manifest.entry(name)
    if entry.kind != "sam2":
        raise VfxError(f"model {name} is a {entry.kind} model, not sam2")
    folder = store.require(name)
    dtype = torch_dtype(device)
    try:
        model = Sam2VideoModel.from_pretrained(folder, dtype=dtype, local_files_only=True)
        processor = Sam2VideoProcessor.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, RuntimeError) as exc:
        raise VfxError(f"model {name}: cannot load from {folder} ({str(exc).splitlines()[0]})") from None
    model = model.to(torch.device(device)).eval()
    log.info("loaded %s from %s on %s in %s", name, folder, device, dtype)
    return Sam2(name, model, processor, device)


def new_session(sam2: Sam2) -> Sam2VideoInferenceSession:
    return sam2.processor.init_video_session(inference_device=sam2.device, dtype=sam2.dtype)


def prune(session: Sam2VideoInferenceSession, frame_idx: int, num_maskmem: int, max_pointers: int, reverse: bool) -> None:
    """Forget what the model will never read again after ``frame_idx``.

    Tracking reads the prompted frames' outputs, the mask memories of the last ``num_maskmem - 1``
    frames and the object pointers of the last ``max_pointers - 1``; everything older goes, and
    so do the frame's pixels and image features (already used).
    """
    if session.processed_frames is not None:
        session.processed_frames.pop(frame_idx, None)
    session.cache._vision_features.pop(frame_idx, None)  # the cache has no per-frame removal
    for obj_idx, outputs in session.output_dict_per_obj.items():
        tracked = outputs["non_cond_frame_outputs"]
        for number in list(tracked):
            age = (number - frame_idx) if reverse else (frame_idx - number)
            if age >= max(num_maskmem, max_pointers) - 1 or age < 0:
                del tracked[number]
            elif age >= num_maskmem - 1:  # only its object pointer can still be read
                tracked[number] = {"object_pointer": tracked[number]["object_pointer"]}
        seen = session.frames_tracked_per_obj[obj_idx]
        for number in list(seen):
            if number != frame_idx:
                del seen[number]


def session_size(session: Sam2VideoInferenceSession) -> dict[str, int]:
    """How much the session holds: frames with mask memories, with any output, pixels, features."""
    outputs = [o for per_obj in session.output_dict_per_obj.values()
               for kind in ("cond_frame_outputs", "non_cond_frame_outputs") for o in per_obj[kind].values()]
    return {"memories": sum(1 for o in outputs if "maskmem_features" in o), "outputs": len(outputs),
            "pixels": len(session.processed_frames or {}), "features": len(session.cache._vision_features)}


@dataclass
class Direction:
    """One tracking direction's session and whether the subject was seen on its last frame."""

    session: Sam2VideoInferenceSession
    reverse: bool = False
    present: bool | None = None


@dataclass
class Sam2State:
    first_key: int
    prompts: dict[int, SubjectPrompt]  # key frame -> its prompt
    forward: Direction
    backward: Spool | None = field(default=None, repr=False)  # hard masks of the frames before the first key frame
    first_frame: int = 0
    limit: int = 1  # frames per image-encoder pass; halved on out-of-memory
    empty_frames: int = 0
    lost: list[int] = field(default_factory=list)
    found: list[int] = field(default_factory=list)
    largest_session: dict[str, int] = field(default_factory=dict)


class Sam2VideoSegmenter(Step):
    name = "segment"

    def __init__(self, prompts: tuple[SubjectPrompt, ...], sam2: Sam2, feather_px: float = 4.0):
        if not prompts:
            raise VfxError("--subject: the sam2 backend needs a box or points on a key frame")
        self.prompts = prompts
        self.sam2 = sam2
        self.feather_px = feather_px
        config = sam2.model.config
        self.num_maskmem = int(config.num_maskmem)
        self.max_pointers = int(config.max_object_pointers_in_encoder)
        backbone = config.vision_config.backbone_config
        tokens = (config.image_size // 4) ** 2  # Hiera's first stage, the largest activations
        self.bytes_per_frame = tokens * backbone.embed_dim_per_stage[0] * 2 * 48

    # -- shot lifecycle -------------------------------------------------------------------
    def prepare(self, shot: ShotState, frames: FrameSource | None) -> None:
        prompts: dict[int, SubjectPrompt] = {}
        for prompt in self.prompts:
            prompt.check_inside(shot.width, shot.height, shot.first_frame, shot.last_frame)
            prompts[prompt.key_frame if prompt.key_frame is not None else shot.first_frame] = prompt
        first_key = min(prompts)
        state = Sam2State(first_key, prompts, Direction(new_session(self.sam2)), first_frame=shot.first_frame,
                          limit=chunk_limit(self.sam2.device, self.bytes_per_frame, 64))
        shot.steps[self.name] = state
        if first_key == shot.first_frame:
            return
        frames = require_frames(frames, self.name, first_key)
        # Backward: the first key frame down to the shot's first frame, frames and masks in temporary files.
        pixels = Spool((shot.height, shot.width, 3), prefix="vfx-sam2-")
        state.backward = Spool((shot.height, shot.width), prefix="vfx-sam2-")
        try:
            for number, rgb in frames(shot.first_frame, first_key):
                pixels.put(number - shot.first_frame, rgb)
            back = Direction(new_session(self.sam2), reverse=True)
            for number in range(first_key, shot.first_frame - 1, -1):
                (mask,) = self._segment([pixels.get(number - shot.first_frame).copy()], [number], back, state)
                state.backward.put(number - shot.first_frame, mask.astype(np.uint8))
        finally:
            pixels.close()

    def finish(self, shot: ShotState) -> dict | None:
        state = shot.steps.get(self.name)
        if not isinstance(state, Sam2State):
            return None
        if state.backward is not None:
            state.backward.close()
        report = {"step": self.name, "backend": "sam2", "model": self.sam2.name, "key_frames": sorted(state.prompts),
                  "empty_frames": state.empty_frames, "lost_at": state.lost, "found_again_at": state.found,
                  "largest_session": state.largest_session}
        shot.events.append(report)
        return report

    # -- per batch ------------------------------------------------------------------------
    def __call__(self, batch: FrameBatch, shot: ShotState) -> FrameBatch:
        state: Sam2State = shot.steps[self.name]
        numbers = batch.indices.tolist()
        masks: list[np.ndarray | None] = [None] * len(numbers)
        for i, number in enumerate(numbers):
            if number < state.first_key:
                masks[i] = state.backward.get(number - state.first_frame).astype(bool)
        todo = [i for i, number in enumerate(numbers) if number >= state.first_key]
        if todo:
            found = self._segment([batch.originals[i] for i in todo], [numbers[i] for i in todo], state.forward, state)
            for i, mask in zip(todo, found):
                masks[i] = mask
        batch.matte = np.stack([soft_edge(rgb, mask, self.feather_px) for rgb, mask in zip(batch.originals, masks)])
        return batch

    # -- the model ------------------------------------------------------------------------
    @torch.inference_mode()
    def _segment(self, rgbs: list[np.ndarray], numbers: list[int], track: Direction, state: Sam2State) -> list[np.ndarray]:
        """Hard masks of consecutive frames in tracking order: one encoder pass, then frame by frame."""
        sam2, session = self.sam2, track.session
        inputs = sam2.processor(images=list(rgbs), return_tensors="pt")
        pixels = inputs.pixel_values.to(sam2.device, sam2.dtype)
        parts, state.limit = run_chunked(lambda part: sam2.model.get_image_features(pixels[part])[:2], len(rgbs),
                                         state.limit, what="sam2 image encoder")
        # each level is [H*W, frames, C]: the chunks join along the frame axis
        features, positions = ([torch.cat([part[k][level] for part in parts], dim=1) for level in range(len(parts[0][k]))]
                               for k in (0, 1))
        session.cache.max_vision_features_cache_size = max(session.cache.max_vision_features_cache_size, len(rgbs))
        height, width = rgbs[0].shape[:2]
        out = []
        for i, number in enumerate(numbers):
            idx = number - state.first_frame
            session.cache.cache_vision_features(idx, {"vision_feats": [f[:, i:i + 1] for f in features],
                                                      "vision_pos_embeds": [p[:, i:i + 1] for p in positions]})
            if number in state.prompts:
                self._add_prompt(session, idx, state.prompts[number], (height, width))
            result = sam2.model(inference_session=session, frame_idx=idx, frame=pixels[i], reverse=track.reverse)
            logits = sam2.processor.post_process_masks([result.pred_masks.float().cpu()], original_sizes=[(height, width)],
                                                      binarize=False)[0]
            mask = (logits[0, 0] > 0).numpy()
            if number == state.first_key and not mask.any():
                raise VfxError("--subject: SAM 2 found nothing at the prompt on the key frame; move or add points")
            size = session_size(session)
            state.largest_session = {k: max(v, state.largest_session.get(k, 0)) for k, v in size.items()}
            prune(session, idx, self.num_maskmem, self.max_pointers, track.reverse)
            self._note_presence(track, state, number, bool(mask.any()))
            out.append(mask)
        return out

    def _add_prompt(self, session: Sam2VideoInferenceSession, idx: int, prompt: SubjectPrompt, size: tuple[int, int]) -> None:
        points = [list(p) for p in prompt.points] + [list(p) for p in prompt.negative_points]
        labels = [1] * len(prompt.points) + [0] * len(prompt.negative_points)
        box = None
        if prompt.box is not None:
            x, y, w, h = prompt.box
            box = [[[x, y, x + w, y + h]]]
        self.sam2.processor.add_inputs_to_inference_session(
            session, frame_idx=idx, obj_ids=OBJECT_ID, input_points=[[points]] if points else None,
            input_labels=[[labels]] if points else None, input_boxes=box, original_size=size)

    @staticmethod
    def _note_presence(track: Direction, state: Sam2State, number: int, present: bool) -> None:
        if not present:
            state.empty_frames += 1
        if track.present is not None and present != track.present:
            (state.found if present else state.lost).append(number)
            log.info("sam2: subject %s at frame %d%s", "found again" if present else "lost", number,
                     " (tracking backward)" if track.reverse else "")
        track.present = present
