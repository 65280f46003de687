"""Frames/s of the SAM 2.1 streaming segment step at batch sizes 1, 2, 4, and how much the
inference session holds at the end (it must not grow with the shot).

Batch size only changes the image encoder (one pass over the batch's frames); the memory
attention and mask decoder run frame by frame, as streaming requires.

Tiny random model on the CPU (default; what CI and laptops can run):
    .venv/bin/python benchmarks/bench_sam2.py
Real weights from the model store on a GPU:
    vfx models fetch sam2.1_hiera_tiny        # or _small, _base_plus, _large
    python benchmarks/bench_sam2.py --store --model sam2.1_hiera_tiny --device cuda \\
        --size 768x576 --frames 64 --batches 1,2,4,8
Frames are real footage (../shared/samples/vtest.avi, or --video PATH), resized to --size.
"""
from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vfx.frames import FrameBatch, ShotState
from vfx.models import ModelStore
from vfx.segment.prompts import parse_subject
from vfx.segment.sam2 import Sam2VideoSegmenter, load_sam2, session_size
from bench_models import read_frames  # real footage, resized: one reader for the model benchmarks


def tiny_store(root: Path) -> tuple[ModelStore, str]:
    sys.path.insert(0, str(ROOT / "tests"))
    from model_helpers import tiny_sam2, write_store

    entry, folder = tiny_sam2(root)
    store = write_store(root, {"sam2_tiny": entry})
    store.import_from("sam2_tiny", folder)
    return store, "sam2_tiny"


def run_shot(step: Sam2VideoSegmenter, frames: np.ndarray, batch: int, device: str) -> tuple[float, float, dict]:
    """The whole shot through the step in batches of ``batch``: (frames/s wall, frames per CPU-s, session size)."""
    h, w = frames.shape[1:3]
    shot = ShotState(w, h, 25.0, 0, len(frames) - 1)
    step.prepare(shot, None)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start, start_cpu = time.perf_counter(), time.process_time()
    for i in range(0, len(frames), batch):
        numbers = np.arange(i, min(i + batch, len(frames)))
        step(FrameBatch(frames[numbers].copy(), numbers, numbers / 25.0), shot)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter() - start, max(1e-9, time.process_time() - start_cpu)
    size = session_size(shot.steps[step.name].forward.session)
    step.finish(shot)
    return len(frames) / wall, len(frames) / cpu, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", action="store_true", help="use real weights from $VFX_MODEL_DIR instead of the tiny model")
    parser.add_argument("--model", default="sam2.1_hiera_tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", default=None, help="WxH of the frames (default: 128x96 tiny, 768x576 real)")
    parser.add_argument("--frames", type=int, default=None, help="default: 12 tiny, 64 real")
    parser.add_argument("--batches", default="1,2,4")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs per batch size (shared machines are noisy)")
    parser.add_argument("--video", default=str(ROOT.parent / "shared" / "samples" / "vtest.avi"))
    args = parser.parse_args()
    size = tuple(int(v) for v in (args.size or ("768x576" if args.store else "128x96")).split("x"))
    count = args.frames or (64 if args.store else 12)
    frames = read_frames(Path(args.video), count + 1, size)  # one more for the warm-up
    with tempfile.TemporaryDirectory() as tmp:
        store, name = (ModelStore(), args.model) if args.store else tiny_store(Path(tmp) / "store")
        sam2 = load_sam2(store, name, args.device)
        w, h = size
        step = Sam2VideoSegmenter(parse_subject(f"box:{w // 3},{h // 8},{w // 3},{3 * h // 4}@0").prompts, sam2)
        run_shot(step, frames[:2], 1, args.device)  # warm-up: allocator, kernels
        rows = []
        for batch in (int(b) for b in args.batches.split(",")):
            runs = [run_shot(step, frames[1:], batch, args.device) for _ in range(args.repeats)]
            fps, cpu, held = max(r[0] for r in runs), max(r[1] for r in runs), runs[-1][2]
            rows.append((batch, fps, cpu, held))
            print(f"batch {batch}: {fps:.2f} frames/s, {cpu:.2f} frames/CPU-s, session {held}", file=sys.stderr)
    print(f"SAM 2 streaming step, {name} on {args.device}, {count} frames {w}x{h}, best of {args.repeats} "
          f"({platform.processor() or platform.machine()}, torch {torch.__version__})\n")
    print("| batch | frames/s (wall) | vs batch 1 | frames per CPU-s | session at the end (memories / outputs / pixels / features) |")
    print("|---:|---:|---:|---:|---|")
    for batch, fps, cpu, held in rows:
        print(f"| {batch} | {fps:.2f} | {fps / rows[0][1]:.2f}x | {cpu:.2f} | "
              f"{held['memories']} / {held['outputs']} / {held['pixels']} / {held['features']} |")


if __name__ == "__main__":
    main()
