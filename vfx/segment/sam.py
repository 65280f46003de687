"""Segment Anything backend: box/point prompts on a key frame, tracked through the shot.

The image encoder (the expensive part) runs on whole batches of frames. Masks are then decoded
frame by frame in tracking order: the key frame from the user's prompts, every other frame
re-prompted from the subject's tracked box (the previous mask carried by DIS optical flow) and
the previous frame's mask logits warped by the same flow. Where SAM disagrees with the flow
(low overlap, e.g. a bad frame), the flow-carried mask is kept, so a single miss cannot lose
the subject. Frames before the key frame are tracked backward in ``prepare``; their masks wait
in a temporary file, as in the embedded prompt tracker.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from functools import partial

import cv2
import numpy as np
import torch
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer
from segment_anything.utils.transforms import ResizeLongestSide

from vfx.devices import chunk_limit, prepare_module, run_chunked, torch_dtype
from vfx.errors import VfxError
from vfx.frames import FrameBatch, FrameSource, ShotState, Step, require_frames
from vfx.matte import fill_holes, resize_matte, soft_edge
from vfx.models import ModelEntry, ModelStore
from vfx.segment.spool import Spool
from vfx.segment.person import PersonSegmenter
from vfx.segment.prompts import SubjectPrompt

log = logging.getLogger(__name__)


def build_sam(architecture: dict) -> Sam:
    """The SAM network described by a manifest entry's ``architecture`` (vit_b/l/h or a tiny test one)."""
    a = architecture
    size, patch, dim = a["image_size"], a["patch_size"], a["prompt_embed_dim"]
    grid = size // patch
    return Sam(
        image_encoder=ImageEncoderViT(
            depth=a["depth"], embed_dim=a["embed_dim"], img_size=size, mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=a["num_heads"], patch_size=patch,
            qkv_bias=True, use_rel_pos=True, global_attn_indexes=tuple(a["global_attn_indexes"]),
            window_size=a["window_size"], out_chans=dim,
        ),
        prompt_encoder=PromptEncoder(embed_dim=dim, image_embedding_size=(grid, grid), input_image_size=(size, size),
                                     mask_in_chans=16),
        mask_decoder=MaskDecoder(num_multimask_outputs=3,
                                 transformer=TwoWayTransformer(depth=2, embedding_dim=dim, mlp_dim=a["decoder_mlp_dim"], num_heads=8),
                                 transformer_dim=dim, iou_head_depth=3, iou_head_hidden_dim=256),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )


def load_sam(store: ModelStore, name: str, device: str) -> Sam:
    """Verify the checkpoint's hash, build the architecture, load the weights strictly.

    The image encoder runs in fp16 + channels_last on CUDA; the prompt encoder and mask decoder
    stay fp32 (they are small, and SAM's positional encoding mixes dtypes in half precision).
    """
    entry: ModelEntry = store.manifest.entry(name)
    if entry.kind != "sam":
        raise VfxError(f"model {name} is a {entry.kind} model, not sam")
    path = store.require(name) / entry.files[0].path
    sam = build_sam(entry.architecture)
    state = torch.load(path, map_location="cpu", weights_only=True)
    try:
        sam.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise VfxError(f"model {name}: {path.name} does not fit the manifest's architecture ({str(exc).splitlines()[0]})") from None
    sam = sam.to(device).eval()
    sam.image_encoder = prepare_module(sam.image_encoder, device)
    log.info("loaded %s (%s) on %s, image encoder in %s", name, path.name, device, torch_dtype(device))
    return sam


@dataclass
class Track:
    """One tracking direction's memory: the last frame's grey, mask and SAM logits (work scale)."""

    gray: np.ndarray | None = None
    mask: np.ndarray | None = None
    logits: np.ndarray | None = None  # float32 [256,256], SAM's low-res mask logits


@dataclass
class SamState:
    key_frame: int
    scale: float
    limit: int  # frames per encoder pass; halved on out-of-memory
    forward: Track = field(default_factory=Track)
    work_shape: tuple[int, int] = (0, 0)
    flow_fallbacks: int = 0
    backward: Spool | None = field(default=None, repr=False)  # masks of the frames before the key frame
    first_frame: int = 0

    def backward_mask(self, number: int) -> np.ndarray:
        return self.backward.get(number - self.first_frame).astype(bool)


class SamSegmenter(Step):
    name = "segment"

    def __init__(self, prompt: SubjectPrompt, sam: Sam, device: str, model_name: str = "sam",
                 feather_px: float = 4.0, work_size: int = 512, min_agreement: float = 0.5):
        self.prompt = prompt
        self.sam = sam
        self.device = device
        self.model_name = model_name
        self.feather_px = feather_px
        self.work_size = work_size
        self.min_agreement = min_agreement  # IoU with the flow-carried mask below which SAM's mask is not trusted
        self.transform = ResizeLongestSide(sam.image_encoder.img_size)
        self._local = threading.local()
        encoder = sam.image_encoder
        tokens = (encoder.img_size // encoder.patch_embed.proj.kernel_size[0]) ** 2
        self.bytes_per_frame = tokens * encoder.patch_embed.proj.out_channels * 2 * 48

    # -- shot lifecycle -------------------------------------------------------------------
    def prepare(self, shot: ShotState, frames: FrameSource) -> None:
        key = self.prompt.key_frame if self.prompt.key_frame is not None else shot.first_frame
        self.prompt.check_inside(shot.width, shot.height, shot.first_frame, shot.last_frame)
        scale = min(1.0, self.work_size / max(shot.width, shot.height))
        state = SamState(key_frame=key, scale=scale, limit=chunk_limit(self.device, self.bytes_per_frame, 64))
        state.work_shape = (round(shot.height * scale), round(shot.width * scale))
        shot.steps[self.name] = state
        if key == shot.first_frame:
            return
        frames = require_frames(frames, self.name, key)
        # Backward pass: key frame down to the first frame, in encoder-sized chunks, masks to a file.
        frames_spool = Spool((shot.height, shot.width, 3), prefix="vfx-sam-")  # memory stays flat however far the key frame is
        state.first_frame = shot.first_frame
        state.backward = Spool(state.work_shape, prefix="vfx-sam-")
        try:
            count = 0
            for number, rgb in frames(shot.first_frame, key):
                frames_spool.put(number - shot.first_frame, rgb)
                count += 1
            track, order, start = Track(), list(range(count - 1, -1, -1)), 0
            while start < count:
                part = order[start:start + state.limit]
                found = self._segment([frames_spool.get(i) for i in part], [shot.first_frame + i for i in part], track, state)
                for i, mask in zip(part, found):
                    state.backward.put(i, mask)
                start += len(part)
        finally:
            frames_spool.close()

    def finish(self, shot: ShotState) -> None:
        state = shot.steps.get(self.name)
        if isinstance(state, SamState):
            shot.events.append({"step": self.name, "backend": "sam", "model": self.model_name,
                                "flow_fallbacks": state.flow_fallbacks})
            if state.backward is not None:
                state.backward.close()

    # -- per batch ------------------------------------------------------------------------
    def __call__(self, batch: FrameBatch, shot: ShotState) -> FrameBatch:
        state: SamState = shot.steps[self.name]
        numbers = batch.indices.tolist()
        masks: list[np.ndarray | None] = [state.backward_mask(n) if n < state.key_frame else None for n in numbers]
        todo = [i for i, n in enumerate(numbers) if n >= state.key_frame]
        if todo:
            found = self._segment([batch.originals[i] for i in todo], [numbers[i] for i in todo], state.forward, state)
            for i, mask in zip(todo, found):
                masks[i] = mask
        width, height = batch.size
        batch.matte = np.stack([soft_edge(rgb, resize_matte(m.astype(np.float32), width, height) > 0.5, self.feather_px)
                                for rgb, m in zip(batch.originals, masks)])
        return batch

    # -- the model ------------------------------------------------------------------------
    @torch.inference_mode()
    def embed(self, rgbs: list[np.ndarray], state: SamState | None = None) -> torch.Tensor:
        """Image embeddings [B, C, h, w] (fp32) of frames, the encoder run on chunks of the batch."""
        x = torch.from_numpy(np.stack([self.transform.apply_image(rgb) for rgb in rgbs]))
        x = self.sam.preprocess(x.to(self.device).permute(0, 3, 1, 2).float())
        dtype = torch_dtype(self.device)

        def encode(part: slice) -> torch.Tensor:
            chunk = x[part].to(dtype)
            if self.device.startswith("cuda"):
                chunk = chunk.contiguous(memory_format=torch.channels_last)
            return self.sam.image_encoder(chunk).float()

        limit = state.limit if state is not None else len(rgbs)
        parts, limit = run_chunked(encode, len(rgbs), limit, what="sam image encoder")
        if state is not None:
            state.limit = limit
        return torch.cat(parts)

    @torch.inference_mode()
    def decode(self, embedding: torch.Tensor, original_size: tuple[int, int], work_shape: tuple[int, int],
               points: np.ndarray | None = None, labels: np.ndarray | None = None, box: np.ndarray | None = None,
               mask_logits: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """One frame's mask (work scale, bool) and its low-res logits, from prompts in source pixels."""
        sam, dev = self.sam, self.device
        input_size = self.transform.get_preprocess_shape(*original_size, self.transform.target_length)
        point_arg = box_arg = mask_arg = None
        if points is not None and len(points):
            coords = self.transform.apply_coords(points, original_size)
            point_arg = (torch.as_tensor(coords, dtype=torch.float32, device=dev)[None],
                         torch.as_tensor(labels, dtype=torch.int, device=dev)[None])
        if box is not None:
            box_arg = torch.as_tensor(self.transform.apply_boxes(box[None], original_size), dtype=torch.float32, device=dev)
        if mask_logits is not None:
            mask_arg = torch.as_tensor(mask_logits, dtype=torch.float32, device=dev)[None, None]
        sparse, dense = sam.prompt_encoder(points=point_arg, boxes=box_arg, masks=mask_arg)
        multimask = box is None and mask_logits is None and (points is None or len(points) == 1)
        low_res, iou = sam.mask_decoder(image_embeddings=embedding, image_pe=sam.prompt_encoder.get_dense_pe(),
                                        sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                        multimask_output=multimask)
        best = int(iou[0].argmax())
        logits = low_res[:, best:best + 1]
        mask = sam.postprocess_masks(logits, input_size, work_shape)[0, 0] > sam.mask_threshold
        return mask.cpu().numpy(), logits[0, 0].float().cpu().numpy()

    # -- tracking -------------------------------------------------------------------------
    def _segment(self, rgbs: list[np.ndarray], numbers: list[int], track: Track, state: SamState) -> list[np.ndarray]:
        """Masks for consecutive frames given in tracking order, carrying ``track`` along."""
        embeddings = self.embed(rgbs, state)
        original_size = rgbs[0].shape[:2]
        out = []
        for i, (rgb, number) in enumerate(zip(rgbs, numbers)):
            small = cv2.resize(rgb, state.work_shape[::-1], interpolation=cv2.INTER_AREA) if state.scale < 1 else rgb
            gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
            if number == state.key_frame:
                mask, logits = self._key_mask(embeddings[i:i + 1], original_size, state)
            elif track.mask is None or not track.mask.any():
                mask, logits = np.zeros(state.work_shape, dtype=bool), None  # the subject has left the frame
            else:
                mask, logits = self._follow(embeddings[i:i + 1], gray, original_size, track, state)
            track.gray, track.mask, track.logits = gray, mask, logits
            out.append(mask)
        return out

    def _key_mask(self, embedding: torch.Tensor, original_size: tuple[int, int], state: SamState):
        p = self.prompt
        points = np.array(list(p.points) + list(p.negative_points), dtype=np.float32).reshape(-1, 2)
        labels = np.array([1] * len(p.points) + [0] * len(p.negative_points), dtype=np.int32)
        box = None
        if p.box is not None:
            x, y, w, h = p.box
            box = np.array([x, y, x + w, y + h], dtype=np.float32)
        mask, logits = self.decode(embedding, original_size, state.work_shape, points, labels, box)
        mask = fill_holes(mask)
        if not mask.any():
            raise VfxError("--subject: SAM found nothing at the prompt on the key frame; move or add points")
        return mask, logits

    def _follow(self, embedding: torch.Tensor, gray: np.ndarray, original_size: tuple[int, int], track: Track, state: SamState):
        flow = self._flow(gray, track.gray)
        warped = _warp(track.mask.astype(np.float32), flow) > 0.5
        if not warped.any():
            return warped, None
        ys, xs = np.nonzero(warped)
        pad = 0.02 * max(warped.shape)
        box = np.array([xs.min() - pad, ys.min() - pad, xs.max() + 1 + pad, ys.max() + 1 + pad], dtype=np.float32) / state.scale
        box = np.clip(box, 0, [original_size[1], original_size[0]] * 2)
        logits_in = self._warp_logits(track.logits, flow, original_size) if track.logits is not None else None
        mask, logits = self.decode(embedding, original_size, state.work_shape, box=box, mask_logits=logits_in)
        mask = fill_holes(mask)
        union = (mask | warped).sum()
        if union == 0 or (mask & warped).sum() / union < self.min_agreement:
            state.flow_fallbacks += 1
            return warped, None
        return mask, logits

    def _warp_logits(self, logits: np.ndarray, flow: np.ndarray, original_size: tuple[int, int]) -> np.ndarray:
        """Carry the previous low-res logits by the flow: they cover the padded square encoder input."""
        h, w = self.transform.get_preprocess_shape(*original_size, self.transform.target_length)
        side = logits.shape[0]
        lh, lw = max(1, round(h * side / self.transform.target_length)), max(1, round(w * side / self.transform.target_length))
        small = cv2.resize(flow, (lw, lh), interpolation=cv2.INTER_AREA) * np.float32(lw / flow.shape[1])
        out = np.full_like(logits, logits.min())
        out[:lh, :lw] = _warp(np.ascontiguousarray(logits[:lh, :lw]), small, border=float(logits.min()))
        return out

    def _flow(self, gray: np.ndarray, earlier_gray: np.ndarray) -> np.ndarray:
        dis = getattr(self._local, "dis", None)
        if dis is None:
            dis = self._local.dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        return dis.calc(gray, earlier_gray, None)


def _warp(image: np.ndarray, flow: np.ndarray, border: float = 0.0) -> np.ndarray:
    """``image`` (from the earlier frame) moved to the current one; ``flow`` says where pixels came from."""
    h, w = flow.shape[:2]
    grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(image, grid_x + flow[..., 0], grid_y + flow[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_CONSTANT, borderValue=border)


class SamPersonSegmenter(Step):
    """People: the embedded person matte finds them (and carries its temporal smoothing and cut
    detection); SAM redraws each person's edge from a box around them, all frames of a batch
    through the image encoder at once. A person SAM misses keeps the embedded matte."""

    name = "segment"

    def __init__(self, sam: SamSegmenter, person: PersonSegmenter, min_area: float = 0.0005):
        self.sam = sam
        self.person = person
        self.person.name = "segment.person"  # its memory sits beside ours in shot.steps
        self.min_area = min_area  # fraction of the frame below which a blob is noise, not a person

    def __call__(self, batch: FrameBatch, shot: ShotState) -> FrameBatch:
        coarse = self.person(batch, shot).matte >= 1.0
        state = shot.steps.get(self.name)
        if state is None:
            scale = min(1.0, self.sam.work_size / max(shot.width, shot.height))
            state = shot.steps[self.name] = SamState(key_frame=shot.first_frame, scale=scale,
                                                     limit=chunk_limit(self.sam.device, self.sam.bytes_per_frame, 64))
            state.work_shape = (round(shot.height * scale), round(shot.width * scale))
        embeddings = self.sam.embed(list(batch.originals), state)
        width, height = batch.size
        mattes = []
        for i, people in enumerate(coarse):
            mask = np.zeros((height, width), dtype=bool)
            count, labels, stats, _ = cv2.connectedComponentsWithStats(people.astype(np.uint8), connectivity=8)
            for label in range(1, count):
                x, y, w, h, area = stats[label]
                if area < self.min_area * width * height:
                    continue
                region = labels == label
                box = np.array([x, y, x + w, y + h], dtype=np.float32)
                found, _ = self.sam.decode(embeddings[i:i + 1], (height, width), (height, width), box=box)
                union = (found | region).sum()
                if (found & region).sum() / union < self.sam.min_agreement:
                    state.flow_fallbacks += 1
                    found = region
                mask |= found
            mattes.append(soft_edge(batch.originals[i], fill_holes(mask), self.sam.feather_px))
        batch.matte = np.stack(mattes)
        return batch

    def finish(self, shot: ShotState) -> None:
        self.sam.finish(shot)
