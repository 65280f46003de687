"""Diffusion restyle with tiny SD-architecture models saved as diffusers folders, loaded like real ones."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import SAMPLES
from model_helpers import tiny_controlnet, tiny_diffusion, tiny_sam, write_store
from video_helpers import read_all, run_cli, write_sequence

from vfx.config import RestyleConfig
from vfx.devices import run_chunked
from vfx.errors import VfxError
from vfx.frames import FrameBatch, ShotState
from vfx.restyle.diffusion import DiffusionRestyle, load_diffusion
from vfx.video.sequence import read_image_rgb


@pytest.fixture(scope="module")
def frames():
    """Four 64x64 crops of a real photograph, shifted like a slow pan."""
    image = read_image_rgb(SAMPLES / "building.jpg")
    return np.stack([image[100 + 2 * i:164 + 2 * i, 200 + 3 * i:264 + 3 * i] for i in range(4)])


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("models") / "store"
    entries = {"sd_tiny": tiny_diffusion(root, "sd_tiny"),
               "sd_tiny_inpaint": tiny_diffusion(root, "sd_tiny_inpaint", inpaint=True, guidance_scale=3.0)}
    entries["cn_tiny"] = tiny_controlnet(root, root / "sd_tiny", "cn_tiny")
    entries["sam_tiny"] = tiny_sam(root)
    return write_store(root, entries)


def _matte(n=4):
    matte = np.zeros((n, 64, 64), np.float32)
    matte[:, 16:44, 20:40] = 1.0
    matte[:, 14:16, 20:40] = 0.5  # a soft edge
    return matte


def _restyle(store, frames, model="sd_tiny", controlnet=None, batches=(4,), **options):
    step = DiffusionRestyle(load_diffusion(store, model, "cpu", controlnet),
                            RestyleConfig(prompt="the oil painting", **{"steps": 2, "strength": 0.5, **options}), "cpu")
    shot, out, start = ShotState(64, 64, 24.0, 0, len(frames) - 1), [], 0
    for size in batches:
        part = slice(start, start + size)
        batch = FrameBatch(frames[part].copy(), np.arange(start, start + size), np.zeros(size), matte=_matte(size))
        out.append(step(batch, shot).frames)
        start += size
    return np.concatenate(out), step, shot


def test_batch_equals_per_frame_and_seed_is_deterministic(store, frames):
    together, step, shot = _restyle(store, frames, batches=(4,))
    alone, _, _ = _restyle(store, frames, batches=(1, 1, 1, 1))
    assert np.abs(together.astype(int) - alone.astype(int)).max() <= 2
    again, _, _ = _restyle(store, frames, batches=(4,))
    assert np.array_equal(together, again)
    other, _, _ = _restyle(store, frames, batches=(4,), seed=7)
    assert not np.array_equal(together, other)
    assert np.abs(together.astype(int) - frames.astype(int)).mean() > 5  # it did restyle the surroundings


def test_subject_kept_exactly_with_inpainting_and_controlnet(store, frames):
    subject = _matte() >= 1.0
    for model, controlnet in (("sd_tiny_inpaint", None), ("sd_tiny", "cn_tiny")):
        out, _, _ = _restyle(store, frames, model=model, controlnet=controlnet)
        assert np.array_equal(out[subject], frames[subject])
        assert not np.array_equal(out[~subject], frames[~subject])
    plain, _, _ = _restyle(store, frames)
    held, _, _ = _restyle(store, frames, controlnet="cn_tiny")
    assert not np.array_equal(plain, held)  # the ControlNet's residuals reach the UNet


def test_out_of_memory_halves_the_batch_and_carries_on(store, frames, monkeypatch):
    # No GPU can exist here, so CUDA's out-of-memory error is raised by a wrapper around the real UNet.
    expected, step, _ = _restyle(store, frames)
    unet = step.models.unet
    real_forward = unet.forward

    def forward(sample, *args, **kwargs):
        if sample.shape[0] > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return real_forward(sample, *args, **kwargs)

    monkeypatch.setattr(unet, "forward", forward)
    shot = ShotState(64, 64, 24.0, 0, 3)
    out = step(FrameBatch(frames.copy(), np.arange(4), np.zeros(4), matte=_matte()), shot).frames
    assert shot.steps["restyle"].limit == 2
    assert np.abs(out.astype(int) - expected.astype(int)).max() <= 2
    with pytest.raises(VfxError, match="out of GPU memory even for one frame"):
        run_chunked(lambda part: (_ for _ in ()).throw(torch.cuda.OutOfMemoryError("oom")), 3, 4, what="test")


def test_settings_that_cannot_work_are_refused(store):
    models = load_diffusion(store, "sd_tiny", "cpu")
    with pytest.raises(VfxError, match="leaves no denoising step"):
        DiffusionRestyle(models, RestyleConfig(prompt="x", steps=1, strength=0.5), "cpu")
    with pytest.raises(VfxError, match="not diffusion"):
        load_diffusion(store, "cn_tiny", "cpu")


def test_vfx_run_sam_and_diffusion_end_to_end(store, frames, tmp_path, monkeypatch):
    monkeypatch.setenv("VFX_MODEL_DIR", str(store.root))
    monkeypatch.setenv("VFX_MODEL_MANIFEST", str(store.root.parent / f"{store.root.name}-models.yaml"))
    (tmp_path / "plate").mkdir()
    plate = write_sequence(tmp_path / "plate", frames, 1001)
    out = tmp_path / "out.%04d.png"
    result = run_cli("run", plate, "-o", str(out), "--matte", str(tmp_path / "matte.%04d.png"), "-q",
                     "--subject", "box:18,12,24,36@1001", "--segmenter", "sam", "--restyler", "diffusion",
                     "--prompt", "the oil painting", "--steps", "2", "--strength", "0.5", "--seed", "3",
                     "--device", "cpu", "--batch-size", "2", "--feather", "0")  # a random SAM: keep its mask hard
    assert result.returncode == 0, result.stderr
    assert "SamSegmenter" in result.stdout and "DiffusionRestyle" in result.stdout
    _, restyled = read_all(out)
    _, mattes = read_all(tmp_path / "matte.%04d.png")
    subject = mattes[..., 0] == 255
    assert subject.any() and np.array_equal(restyled[subject], frames[subject])
    assert not np.array_equal(restyled[~subject], frames[~subject])
    config = store.folder("sd_tiny") / "vae" / "config.json"
    original = config.read_bytes()
    config.write_bytes(original.replace(b"8", b"9", 1))  # same size, different bytes
    try:
        result = run_cli("run", plate, "-o", str(tmp_path / "x.%04d.png"), "-q", "--restyler", "diffusion",
                         "--prompt", "x", "--device", "cpu")
    finally:
        config.write_bytes(original)
    assert result.returncode != 0 and len(result.stderr.strip().splitlines()) == 1
    assert "model sd_tiny is corrupt: vae/config.json sha256 mismatch" in result.stderr


def test_auto_without_a_gpu_says_why_each_backend_was_passed_over(store, monkeypatch):
    from vfx.restyle import build_restyler

    monkeypatch.setenv("VFX_MODEL_DIR", str(store.root))
    monkeypatch.setenv("VFX_MODEL_MANIFEST", str(store.root.parent / f"{store.root.name}-models.yaml"))
    with pytest.raises(VfxError, match=r"diffusion: no GPU \(device cpu\).*classic: needs --style"):
        build_restyler(RestyleConfig(prompt="a storm"), "cpu")
