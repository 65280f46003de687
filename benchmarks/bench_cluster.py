"""Shot throughput of the service with 1, 2 and 4 ChunkWorkers against `vfx run` of the same shots
one after another, in one run; per-chunk costs; a model of N nodes with M GPUs; and the
795-frame prompted vtest.avi job with 4 ChunkWorkers checked frame by frame against `vfx run`.

    .venv/bin/python benchmarks/bench_cluster.py [--out benchmarks/results/cluster.json] [--skip-full]

Numbers on a shared machine are noisy; the model's inputs are printed with the results.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from serve_helpers import SAMPLES, start_app, stop_app, submit, wait_job  # noqa: E402
from vfx.config import PipelineConfig  # noqa: E402
from vfx.job import JobSpec, run_job  # noqa: E402

VTEST, MEGAMIND = SAMPLES / "vtest.avi", SAMPLES / "Megamind.avi"
MAN = "box:366,172,44,88@110"  # the man left of the lamp post on frame 110 of vtest.avi
SHOTS = [  # (name, source, frames, config): a prompted shot, and two shots any chunk can start
    ("prompted man, night", VTEST, "100-339", {"segment": {"subject": [MAN]}, "restyle": {"style": "night"}}),
    ("car park, night", VTEST, "400-639", {"restyle": {"style": "night"}}),
    ("Megamind, night", MEGAMIND, "0-239", {"restyle": {"style": "night"}}),
]
CHUNK, OVERLAP = 48, 6


def frame_count(frames: str) -> int:
    first, last = map(int, frames.split("-"))
    return last - first + 1


def sequential_vfx_run(root: Path) -> dict:
    started = time.perf_counter()
    for name, source, frames, config in SHOTS:
        run_job(JobSpec(str(source), str(root / f"{name.split(',')[0]}.mp4"), PipelineConfig.model_validate(config),
                        frames=frames))
    seconds = time.perf_counter() - started
    total = sum(frame_count(f) for _, _, f, _ in SHOTS)
    return {"workers": "vfx run, one after another", "seconds": seconds, "frames": total, "fps": total / seconds}


def service_run(root: Path, workers: int) -> dict:
    app = start_app(root / f"serve-{workers}", overrides={"jobs": {
        "chunk_frames": CHUNK, "overlap_frames": OVERLAP, "poll_s": 0.2, "max_parallel_chunks": 4}},
        deployments={"ChunkWorker": {"num_replicas": workers, "ray_actor_options": {"num_cpus": 0.5}}})
    try:
        with app.client() as client:
            started = time.perf_counter()
            ids = [submit(client, config, frames=frames, path=source).json()["id"] for _, source, frames, config in SHOTS]
            jobs = [wait_job(client, job_id, timeout_s=1800) for job_id in ids]
            seconds = time.perf_counter() - started
        assert all(j["state"] == "done" for j in jobs), jobs
    finally:
        stop_app()
    total = sum(j["frames"]["total"] for j in jobs)
    return {"workers": workers, "seconds": seconds, "frames": total, "fps": total / seconds,
            "chunks": sum(j["chunks"]["total"] for j in jobs), "attempts": sum(j["chunks"]["attempts"] for j in jobs)}


def chunk_costs(root: Path) -> dict:
    """One chunk of each kind, in this process: what a worker spends per chunk and per frame."""
    from serving.chunks import assemble, chunk_path, plan_chunks, render_chunk
    from serving.tracking import render_config, track_shot
    from vfx.segment.stored import MatteStore

    costs: dict = {}
    config = PipelineConfig.model_validate(SHOTS[0][3])
    job_dir = root / "costs"
    started = time.perf_counter()
    track_shot(str(VTEST), config, job_dir, 100, 100 + 2 * CHUNK - 1, lambda n: None, lambda: False)
    costs["track_s_per_frame"] = (time.perf_counter() - started) / (2 * CHUNK)
    store = MatteStore(job_dir / "mattes")
    costs["matte_bytes_per_frame"] = sum(store.path_of(n).stat().st_size for n in range(100, 100 + 2 * CHUNK)) / (2 * CHUNK)
    chunks = plan_chunks("bench", 100, 100 + 2 * CHUNK - 1, config, CHUNK, OVERLAP)
    started = time.perf_counter()
    for chunk in chunks:
        render_chunk(str(VTEST), chunk, render_config(config, job_dir), job_dir, False, lambda n: None, lambda: False)
    costs["render_s_per_chunk"] = (time.perf_counter() - started) / len(chunks)
    costs["chunk_bytes_per_frame"] = sum(chunk_path(job_dir, c.index).stat().st_size for c in chunks) / sum(
        c.process_count for c in chunks)
    started = time.perf_counter()
    assemble(str(VTEST), chunks, config, job_dir, root / "assembled.mp4", None)
    costs["assemble_s_per_frame"] = (time.perf_counter() - started) / (2 * CHUNK)
    return costs


def model(costs: dict, shot_frames: int, nodes: int, gpus: int, speedup: float, storage_mb_s: float) -> dict:
    """A prompted shot on N nodes x M GPUs, one ChunkWorker per GPU (see RESULTS.md for the assumptions)."""
    workers = nodes * gpus
    chunks = math.ceil(shot_frames / CHUNK)
    track = costs["track_s_per_frame"] * shot_frames / speedup
    render_work = chunks * costs["render_s_per_chunk"] / speedup
    assemble_s = costs["assemble_s_per_frame"] * shot_frames
    chunk_s = costs["render_s_per_chunk"] / speedup
    if workers == 1:  # the one worker tracks, then renders every chunk
        latency = track + render_work + assemble_s
    else:  # chunks render on the other workers behind the tracker; the last one after it
        latency = max(track + chunk_s, render_work / (workers - 1)) + assemble_s
    # many shots at once: every worker busy; tracking passes of different shots run side by side
    work_per_shot = track + render_work + assemble_s
    compute_fps = workers * shot_frames / work_per_shot
    bytes_per_frame = 2 * costs["chunk_bytes_per_frame"] * (1 + OVERLAP / CHUNK) + 2 * costs["matte_bytes_per_frame"]
    storage_fps = storage_mb_s * 1e6 / bytes_per_frame
    return {"nodes": nodes, "gpus": gpus, "workers": workers, "shot_latency_s": latency,
            "farm_fps": min(compute_fps, storage_fps), "bound": "compute" if compute_fps <= storage_fps else "storage"}


def full_prompted_job(root: Path) -> dict:
    """The issue's check: all 795 frames, prompted, 4 ChunkWorkers, frame-identical to vfx run."""
    config = {"segment": {"subject": [MAN]}}
    started = time.perf_counter()
    run_job(JobSpec(str(VTEST), str(root / "full-run.mp4"), PipelineConfig.model_validate(config),
                    matte=str(root / "full-run-matte.mp4")))
    run_seconds = time.perf_counter() - started
    app = start_app(root / "serve-full", overrides={"jobs": {"chunk_frames": CHUNK, "overlap_frames": OVERLAP,
                                                              "poll_s": 0.2, "max_parallel_chunks": 4}},
                    deployments={"ChunkWorker": {"num_replicas": 4, "ray_actor_options": {"num_cpus": 0.5}}})
    try:
        with app.client() as client:
            started = time.perf_counter()
            job = wait_job(client, submit(client, config, path=VTEST, matte=True).json()["id"], timeout_s=3600)
            service_seconds = time.perf_counter() - started
            for what in ("output", "matte"):
                (root / f"full-{what}.mp4").write_bytes(client.get(f"/v1/jobs/{job['id']}/{what}").content)
    finally:
        stop_app()
    differing = {}
    for served, local in (("full-output.mp4", "full-run.mp4"), ("full-matte.mp4", "full-run-matte.mp4")):
        ours, theirs = _decoded(root / served), _decoded(root / local)
        differing[served] = {"frames": [len(ours), len(theirs)],
                             "differing": sum(not np.array_equal(a, b) for a, b in zip(ours, theirs))}
    return {"state": job["state"], "chunks": job["chunks"], "vfx_run_s": run_seconds, "service_s": service_seconds,
            "comparison": differing}


def _decoded(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "cluster.json"))
    parser.add_argument("--skip-full", action="store_true", help="skip the 795-frame identity check")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        root = Path(tmp)
        costs = chunk_costs(root)
        print("per-chunk costs:", json.dumps(costs), flush=True)
        rows = [sequential_vfx_run(root)]
        print(rows[-1], flush=True)
        for workers in (1, 2, 4):
            rows.append(service_run(root, workers))
            print(rows[-1], flush=True)
        full = None if args.skip_full else full_prompted_job(root)
        print("795 frames:", json.dumps(full), flush=True)
    models = [model(costs, 795, n, m, speedup=1.0, storage_mb_s=1000.0) for n in (1, 2, 4, 8) for m in (1, 4, 8)]
    result = {"machine": f"{platform.node()} {platform.machine()}, 2 shared cores", "shots": [s[:3] for s in SHOTS],
              "chunk_frames": CHUNK, "overlap": OVERLAP, "costs": costs, "throughput": rows, "model": models,
              "full_prompted_job": full}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, default=str))
    print("| ChunkWorkers | seconds | frames | frames/s |\n|---|---|---|---|")
    for row in rows:
        print(f"| {row['workers']} | {row['seconds']:.1f} | {row['frames']} | {row['fps']:.2f} |")
    print("| nodes x GPUs | workers | one 795-frame shot (s) | farm frames/s | bound |\n|---|---|---|---|---|")
    for m in models:
        print(f"| {m['nodes']} x {m['gpus']} | {m['workers']} | {m['shot_latency_s']:.0f} | {m['farm_fps']:.1f} | {m['bound']} |")


if __name__ == "__main__":
    main()
