"""Diffusion restyle backend (diffusers): img2img or background inpainting from a text prompt.

Loads SD 1.5 / SD 2.x / SD-Turbo class checkpoints laid out as diffusers folders in the model
store (UNet2DConditionModel, AutoencoderKL, CLIPTextModel + CLIPTokenizer, the checkpoint's own
scheduler), optionally with a ControlNet on Canny edges to hold the scene's structure.

Temporal consistency: one seed and one initial noise tensor per shot, shared by every frame, and
a deterministic VAE encoding (the latent mean), so a frame's result depends only on that frame,
whichever batch it arrives in. Frames go through the UNet several per forward pass; the subject
is put back exactly by the same compositing as the classic path.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import cv2
import diffusers
import numpy as np
import torch
from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from transformers import CLIPTextModel, CLIPTokenizer

from vfx.config import RestyleConfig
from vfx.devices import chunk_limit, prepare_module, run_chunked, torch_dtype
from vfx.errors import VfxError
from vfx.frames import FrameBatch, ShotState, Step
from vfx.models import ModelStore
from vfx.restyle.composite import composite

log = logging.getLogger(__name__)


@dataclass
class DiffusionModels:
    name: str
    unet: UNet2DConditionModel
    vae: AutoencoderKL
    text_encoder: CLIPTextModel
    tokenizer: CLIPTokenizer
    scheduler_class: type
    scheduler_config: dict
    guidance_scale: float  # the checkpoint's default
    controlnet: ControlNetModel | None = None

    @property
    def inpaint(self) -> bool:
        return self.unet.config.in_channels == 9

    @property
    def vae_scale(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def multiple(self) -> int:
        """Image sides must be multiples of this: the VAE's and the UNet's downsampling together."""
        return self.vae_scale * 2 ** (len(self.unet.config.block_out_channels) - 1)


def load_diffusion(store: ModelStore, name: str, device: str, controlnet: str | None = None) -> DiffusionModels:
    """Verify every file's hash, then load each component from the model's diffusers folder."""
    entry = store.manifest.entry(name)
    if entry.kind != "diffusion":
        raise VfxError(f"model {name} is a {entry.kind} model, not diffusion")
    folder = store.require(name)
    dtype = torch_dtype(device)
    common = {"torch_dtype": dtype, "variant": entry.variant, "local_files_only": True}
    try:
        unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet", **common)
        vae = AutoencoderKL.from_pretrained(folder, subfolder="vae", **common)
        text_encoder = CLIPTextModel.from_pretrained(folder / "text_encoder", dtype=dtype, variant=entry.variant,
                                                     local_files_only=True)
        tokenizer = CLIPTokenizer.from_pretrained(folder / "tokenizer", local_files_only=True)
    except (OSError, ValueError, RuntimeError) as exc:
        raise VfxError(f"model {name}: cannot load from {folder} ({str(exc).splitlines()[0]})") from None
    scheduler_config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    scheduler_class = getattr(diffusers, scheduler_config.get("_class_name", ""), None)
    if not (isinstance(scheduler_class, type) and issubclass(scheduler_class, SchedulerMixin)):
        raise VfxError(f"model {name}: unknown scheduler {scheduler_config.get('_class_name')!r}")
    net = None
    if controlnet is not None:
        cn_entry = store.manifest.entry(controlnet)
        if cn_entry.kind != "controlnet":
            raise VfxError(f"model {controlnet} is a {cn_entry.kind} model, not controlnet")
        net = prepare_module(ControlNetModel.from_pretrained(store.require(controlnet), torch_dtype=dtype,
                                                             local_files_only=True), device)
    log.info("loaded %s from %s on %s in %s%s", name, folder, device, dtype, f" with {controlnet}" if controlnet else "")
    return DiffusionModels(
        name=name, unet=prepare_module(unet, device), vae=prepare_module(vae, device),
        text_encoder=prepare_module(text_encoder, device, convolutional=False), tokenizer=tokenizer,
        scheduler_class=scheduler_class, scheduler_config=dict(scheduler_config),
        guidance_scale=float(entry.defaults.get("guidance_scale", 7.5)), controlnet=net,
    )


@dataclass
class DiffusionState:
    noise: torch.Tensor | None = None  # [1, C, h, w] float32 on the CPU: the shot's shared initial noise
    limit: int = 1  # frames per forward pass; halved on out-of-memory


class DiffusionRestyle(Step):
    name = "restyle"

    def __init__(self, models: DiffusionModels, config: RestyleConfig, device: str):
        if not config.prompt:
            raise VfxError("restyle backend diffusion needs --prompt")
        self.models = models
        self.device = device
        self.dtype = torch_dtype(device)
        self.strength = config.strength
        self.steps = config.steps
        self.seed = config.seed
        self.max_side = config.max_side
        self.controlnet_scale = config.controlnet_scale
        if int(config.steps * config.strength) < 1:
            raise VfxError(f"--strength {config.strength} x --steps {config.steps} leaves no denoising step; raise either")
        self.guidance = models.guidance_scale if config.guidance_scale is None else config.guidance_scale
        self.prompt_embeds = self._encode_prompt(config.prompt)
        self.negative_embeds = self._encode_prompt(config.negative_prompt or "") if self.guidance > 1 else None

    def __call__(self, batch: FrameBatch, shot: ShotState) -> FrameBatch:
        width, height = batch.size
        w, h = self.work_size(width, height)
        state = shot.steps.get(self.name)
        if state is None:
            state = shot.steps[self.name] = DiffusionState(limit=chunk_limit(self.device, 64 * w * h * 4, 64))
        if state.noise is None or state.noise.shape[-2:] != (h // self.models.vae_scale, w // self.models.vae_scale):
            state.noise = self.shot_noise(w, h)
        frames = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in batch.frames])
        matte = batch.matte
        keep = (np.stack([cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR) for m in matte]) >= 0.5
                if matte is not None else np.zeros((len(batch), h, w), dtype=bool))
        parts, state.limit = run_chunked(lambda part: self.restyle(frames[part], keep[part], state.noise),
                                         len(batch), state.limit, what="diffusion restyle")
        restyled = np.concatenate(parts)
        if (w, h) != (width, height):
            restyled = np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_CUBIC) for f in restyled])
        batch.source = batch.originals
        batch.frames = composite(batch.frames, restyled, matte)
        return batch

    def work_size(self, width: int, height: int) -> tuple[int, int]:
        scale = min(1.0, self.max_side / max(width, height))
        m = self.models.multiple
        w, h = int(width * scale) // m * m, int(height * scale) // m * m
        if w == 0 or h == 0:
            raise VfxError(f"{width}x{height} frames are too small for diffusion (sides must reach {m} px)")
        return w, h

    def shot_noise(self, width: int, height: int) -> torch.Tensor:
        generator = torch.Generator("cpu").manual_seed(self.seed)
        shape = (1, self.models.unet.config.out_channels, height // self.models.vae_scale, width // self.models.vae_scale)
        return torch.randn(shape, generator=generator, dtype=torch.float32)

    @torch.inference_mode()
    def restyle(self, frames: np.ndarray, keep: np.ndarray, noise: torch.Tensor) -> np.ndarray:
        """uint8 [n,h,w,3] frames -> restyled uint8 frames of the same size (one forward pass per step)."""
        m, n = self.models, len(frames)
        scheduler = m.scheduler_class.from_config(m.scheduler_config)
        scheduler.set_timesteps(self.steps, device=self.device)
        t_start = self.steps - min(int(self.steps * self.strength), self.steps)
        timesteps = scheduler.timesteps[t_start * scheduler.order:]
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(t_start * scheduler.order)
        images = self._to_tensor(frames)
        latents0 = self._encode(images)
        shared = noise.to(self.device, latents0.dtype).expand(n, -1, -1, -1)
        latents = scheduler.add_noise(latents0, shared, timesteps[:1].repeat(n))
        extra = None
        if m.inpaint:
            repaint = torch.from_numpy(~keep).to(self.device, self.dtype)[:, None]
            masked = self._encode(images * (1 - repaint))
            repaint = torch.nn.functional.interpolate(repaint, size=latents.shape[-2:], mode="nearest")
            extra = torch.cat([repaint, masked], dim=1)
        cond = self._edges(frames) if m.controlnet is not None else None
        embeds = self.prompt_embeds.expand(n, -1, -1)
        cfg = self.negative_embeds is not None
        if cfg:
            embeds = torch.cat([self.negative_embeds.expand(n, -1, -1), embeds])
            extra = torch.cat([extra, extra]) if extra is not None else None
            cond = torch.cat([cond, cond]) if cond is not None else None
        for t in timesteps:
            x = scheduler.scale_model_input(torch.cat([latents, latents]) if cfg else latents, t)
            residuals = {}
            if cond is not None:
                down, mid = m.controlnet(x, t, encoder_hidden_states=embeds, controlnet_cond=cond,
                                         conditioning_scale=self.controlnet_scale, return_dict=False)
                residuals = {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}
            if extra is not None:
                x = torch.cat([x, extra], dim=1)
            eps = m.unet(x, t, encoder_hidden_states=embeds, **residuals).sample
            if cfg:
                uncond, text = eps.chunk(2)
                eps = uncond + self.guidance * (text - uncond)
            latents = scheduler.step(eps, t, latents).prev_sample
        decoded = m.vae.decode(latents / m.vae.config.scaling_factor).sample
        out = ((decoded.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return out.permute(0, 2, 3, 1).cpu().numpy()

    # -- pieces ---------------------------------------------------------------------------
    @torch.inference_mode()
    def _encode_prompt(self, text: str) -> torch.Tensor:
        tok = self.models.tokenizer
        ids = tok(text, padding="max_length", max_length=tok.model_max_length, truncation=True, return_tensors="pt").input_ids
        return self.models.text_encoder(ids.to(self.device))[0]

    def _to_tensor(self, frames: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(frames).to(self.device).permute(0, 3, 1, 2).to(self.dtype) / 127.5 - 1
        return x.contiguous(memory_format=torch.channels_last) if self.device.startswith("cuda") else x

    def _encode(self, images: torch.Tensor) -> torch.Tensor:
        vae = self.models.vae
        return vae.encode(images).latent_dist.mode() * vae.config.scaling_factor

    def _edges(self, frames: np.ndarray) -> torch.Tensor:
        edges = np.stack([cv2.Canny(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), 100, 200) for f in frames])
        return torch.from_numpy(edges).to(self.device, self.dtype)[:, None].expand(-1, 3, -1, -1) / 255.0

