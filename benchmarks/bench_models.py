"""Frames/s of the model backends at batch sizes 1, 2, 4, 8, and the speed-up over batch size 1
(the naive one-frame-per-forward-pass baseline).

Tiny models on the CPU (default; what CI and laptops can run):
    .venv/bin/python benchmarks/bench_models.py
Real weights from the model store on a GPU:
    vfx models fetch sam_vit_b && vfx models fetch sd15
    python benchmarks/bench_models.py --store --device cuda --sam sam_vit_b --diffusion sd15 \\
        --size 768x576 --frames 32 --batches 1,2,4,8
Frames are real footage (../shared/samples/vtest.avi, or --video PATH), resized to --size.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vfx.config import RestyleConfig  # noqa: E402
from vfx.devices import resolve_device  # noqa: E402
from vfx.frames import FrameBatch, ShotState  # noqa: E402
from vfx.models import ModelStore  # noqa: E402
from vfx.restyle.diffusion import DiffusionRestyle, load_diffusion  # noqa: E402
from vfx.segment.prompts import parse_subject  # noqa: E402
from vfx.segment.sam import SamSegmenter, load_sam  # noqa: E402


def read_frames(video: Path, count: int, size: tuple[int, int]) -> np.ndarray:
    cap = cv2.VideoCapture(str(video))
    frames = []
    while len(frames) < count:
        ok, bgr = cap.read()
        if not ok:
            raise SystemExit(f"{video}: only {len(frames)} frames")
        frames.append(cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), size, interpolation=cv2.INTER_AREA))
    return np.stack(frames)


def tiny_store(root: Path) -> tuple[ModelStore, str, str]:
    sys.path.insert(0, str(ROOT / "tests"))
    from model_helpers import tiny_diffusion, tiny_sam, write_store

    entries = {"sam_tiny": tiny_sam(root), "sd_tiny": tiny_diffusion(root, "sd_tiny")}
    return write_store(root, entries), "sam_tiny", "sd_tiny"


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def frames_per_second(run_batch, frames: np.ndarray, batch: int, device: str, repeats: int) -> tuple[float, float]:
    """Whole shot through ``run_batch(batch_frames, first_index, shot)`` in batches of ``batch``.

    Returns the best of ``repeats`` runs as frames per wall-clock second, and frames per CPU
    second of this process (all threads): on a shared machine the second is the steadier
    measure of work per frame, the first is what a user waits for.
    """
    run_batch(frames[:batch], 0, None)  # warm-up: allocator, kernels, caches
    wall = cpu = 0.0
    for _ in range(repeats):
        sync(device)
        start, start_cpu = time.perf_counter(), time.process_time()
        shot = None
        for i in range(0, len(frames), batch):
            shot = run_batch(frames[i:i + batch], i, shot)
        sync(device)
        wall = max(wall, len(frames) / (time.perf_counter() - start))
        cpu = max(cpu, len(frames) / max(1e-9, time.process_time() - start_cpu))
    return wall, cpu


def bench(frames: np.ndarray, store: ModelStore, sam_name: str, diffusion_name: str, device: str,
          batches: list[int], steps: int, strength: float, repeats: int) -> list[tuple[str, int, float]]:
    h, w = frames.shape[1:3]
    rows = []
    sam = SamSegmenter(parse_subject(f"box:{w // 3},{h // 4},{w // 3},{h // 2}").prompt, load_sam(store, sam_name, device),
                       device, sam_name)

    def encoder(part, first, shot):
        sam.embed(list(part))
        return shot

    def sam_step(part, first, shot):
        if shot is None:
            shot = ShotState(w, h, 25.0, first, first + len(frames) - 1)
            sam.prepare(shot, None)
            shot.steps[sam.name].limit = len(part)
        sam(FrameBatch(part.copy(), np.arange(first, first + len(part)), np.zeros(len(part))), shot)
        return shot

    restyle = DiffusionRestyle(load_diffusion(store, diffusion_name, device),
                               RestyleConfig(prompt="an oil painting of a city street", steps=steps, strength=strength,
                                             max_side=max(w, h)), device)

    def diffusion_step(part, first, shot):
        if shot is None:
            shot = ShotState(w, h, 25.0, first, first + len(frames) - 1)
        matte = np.zeros(part.shape[:3], np.float32)
        matte[:, h // 4:3 * h // 4, w // 3:2 * w // 3] = 1
        restyle(FrameBatch(part.copy(), np.arange(first, first + len(part)), np.zeros(len(part)), matte=matte), shot)
        shot.steps[restyle.name].limit = len(part)
        return shot

    for label, fn in ((f"sam image encoder ({sam_name})", encoder), (f"sam step: encoder + prompts + flow ({sam_name})", sam_step),
                      (f"diffusion restyle step ({diffusion_name}, {steps} steps x {strength})", diffusion_step)):
        for b in batches:
            fps, cpu = frames_per_second(fn, frames, b, device, repeats)
            rows.append((label, b, fps, cpu))
            print(f"{label:60s} batch {b}: {fps:8.2f} frames/s, {cpu:8.2f} frames/CPU-s", file=sys.stderr)
    return rows


def markdown(rows, header: str) -> str:
    out = [header, "", "| backend | batch | frames/s (wall) | vs batch 1 | frames per CPU-s | vs batch 1 |",
           "|---|---:|---:|---:|---:|---:|"]
    base = {}
    for label, b, fps, cpu in rows:
        base.setdefault(label, (fps, cpu))
        out.append(f"| {label} | {b} | {fps:.2f} | {fps / base[label][0]:.2f}x | {cpu:.2f} | {cpu / base[label][1]:.2f}x |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", action="store_true", help="use real weights from $VFX_MODEL_DIR instead of tiny models")
    parser.add_argument("--sam", default="sam_vit_b")
    parser.add_argument("--diffusion", default="sd15")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", default=None, help="WxH of the frames (default: 128x96 tiny, 768x576 real)")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--batches", default="1,2,4,8")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--strength", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=3, help="report the best of this many runs")
    parser.add_argument("--video", type=Path, default=ROOT.parent / "shared" / "samples" / "vtest.avi")
    args = parser.parse_args()
    device = resolve_device(args.device)
    size = tuple(int(v) for v in (args.size or ("768x576" if args.store else "128x96")).split("x"))
    frames = read_frames(args.video, args.frames, size)
    batches = [int(b) for b in args.batches.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        if args.store:
            store, sam_name, diffusion_name = ModelStore(), args.sam, args.diffusion
        else:
            store, sam_name, diffusion_name = tiny_store(Path(tmp) / "store")
        rows = bench(frames, store, sam_name, diffusion_name, device, batches, args.steps, args.strength, args.repeats)
    gpu = torch.cuda.get_device_name(device) if device.startswith("cuda") else f"{platform.processor() or 'cpu'}, {torch.get_num_threads()} threads"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(markdown(rows, f"load average {load:.1f} on {os.cpu_count()} cores; {args.frames} frames of {args.video.name} at {size[0]}x{size[1]}, device {device} ({gpu}), "
                         f"torch {torch.__version__}, {'fp16' if device.startswith('cuda') else 'fp32'}, best of {args.repeats}"))


if __name__ == "__main__":
    main()
