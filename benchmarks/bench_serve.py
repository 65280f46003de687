"""Live-stream throughput and latency of the vfx Serve app: 1, 4 and 8 concurrent WebSocket
clients, @serve.batch against unbatched per-frame calls, in one run on this machine.

Each client streams real frames (vtest.avi, 768x576 JPEG) with at most WINDOW frames in
flight, so the service is kept busy without the drop-oldest queue discarding anything; drops
are counted anyway. Throughput = frames returned / wall time over all clients; latency is per
frame, send to reply.

    .venv/bin/python benchmarks/bench_serve.py [--frames 24] [--out benchmarks/results/serve.json]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import yaml
from websockets.asyncio.client import connect

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO.parent / "shared" / "samples"
WINDOW = 2
OPTIONS = {"subject": "person", "style": "night"}


def encode_frames(count: int) -> list[bytes]:
    from vfx.video import FrameRange, FrameReader, probe

    reader = FrameReader(probe(SAMPLES / "vtest.avi"), FrameRange(0, count - 1))
    return [cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()
            for _, rgb in reader.frames()]


def start(root: Path, num_cpus: int, max_batch: int, wait_s: float) -> tuple[str, str]:
    import ray
    from ray import serve

    from serving.app import run_applications
    from serving.auth import key_digest
    from serving.cluster import ray_environment
    from serving.settings import load_settings

    key = "bench-" + os.urandom(8).hex()
    (root / "keys.yaml").write_text(yaml.safe_dump({"keys": [{"name": "bench", "role": "operator",
                                                                "sha256": key_digest(key)}]}))
    (root / "state").mkdir(parents=True, exist_ok=True)  # the job store opens it in every replica's constructor
    args = {"state_dir": str(root / "state"), "keys_file": str(root / "keys.yaml"),
            "stream": {"max_batch_size": max_batch, "batch_wait_timeout_s": wait_s, "queue_frames": 8,
                       "max_inflight": WINDOW, "max_streams": 16, "max_streams_per_key": 16}}  # one key, 8 clients
    os.environ.update(ray_environment(load_settings(args)))  # as `vfx serve` runs it
    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    run_applications({**args, "deployments": {"ChunkWorker": {"num_replicas": 1, "ray_actor_options": {"num_cpus": 0.1}}}})
    return f"ws://127.0.0.1:{port}/v1/stream", key


async def client(url: str, key: str, frames: list[bytes], batched: bool) -> dict:
    latencies: list[float] = []
    sent_at: dict[int, float] = {}
    async with connect(url, additional_headers={"Authorization": f"Bearer {key}"}, max_size=2**24, open_timeout=60) as ws:
        await ws.send(json.dumps({**OPTIONS, "batched": batched}))
        assert json.loads(await ws.recv())["type"] == "ready"
        window = asyncio.Semaphore(WINDOW)

        async def sender() -> None:
            for seq, jpeg in enumerate(frames):
                await window.acquire()
                sent_at[seq] = time.perf_counter()
                await ws.send(jpeg)
            await ws.send(json.dumps({"type": "end"}))

        task = asyncio.create_task(sender())
        summary: dict = {}
        for _ in range(len(frames) + 10):
            message = await asyncio.wait_for(ws.recv(), 120)
            if isinstance(message, bytes):
                header = json.loads(message[4:4 + int.from_bytes(message[:4], "big")])
                latencies.append(time.perf_counter() - sent_at[header["seq"]])
                window.release()
                continue
            event = json.loads(message)
            if event["type"] == "summary":
                summary = event
                break
            window.release()
        await task
    return {"latencies": latencies, "dropped": summary.get("dropped", -1)}


async def run_case(url: str, key: str, frames: list[bytes], clients: int, batched: bool) -> dict:
    started = time.perf_counter()
    results = await asyncio.gather(*(client(url, key, frames, batched) for _ in range(clients)))
    wall = time.perf_counter() - started
    latencies = np.array([x for r in results for x in r["latencies"]]) * 1000
    return {"clients": clients, "mode": "@serve.batch" if batched else "unbatched", "frames": int(latencies.size),
            "dropped": sum(r["dropped"] for r in results), "seconds": round(wall, 2),
            "fps": round(latencies.size / wall, 2), "p50_ms": round(float(np.percentile(latencies, 50)), 1),
            "p99_ms": round(float(np.percentile(latencies, 99)), 1)}


def combine(runs: list[dict]) -> dict:
    """Several runs of one case as one row: frames/s over their summed wall time, the worst p99."""
    frames, seconds = sum(r["frames"] for r in runs), sum(r["seconds"] for r in runs)
    return {**runs[0], "runs": len(runs), "frames": frames, "dropped": sum(r["dropped"] for r in runs),
            "seconds": round(seconds, 2), "fps": round(frames / seconds, 2),
            "p50_ms": round(float(np.median([r["p50_ms"] for r in runs])), 1), "p99_ms": max(r["p99_ms"] for r in runs)}


def markdown(rows: list[dict], meta: dict) -> str:
    lines = [f"Machine: {meta['machine']}. Stream options {json.dumps(OPTIONS)}, {meta['frames_per_client']} "
             f"frames per client ({meta['size']} JPEG from vtest.avi), window {WINDOW} frames in flight per client, "
             f"max_batch_size {meta['max_batch']}, batch_wait_timeout_s {meta['batch_wait_timeout_s']:g}, one Frames replica "
             "(the stream's steps, built as `vfx run` builds them), four batches in flight; each row sums "
             f"{meta['rounds'] * 2} runs taken in ABBA order (p50: median of the runs, p99: the worst).", "",
             "| clients | mode | frames | dropped | frames/s | p50 ms | p99 ms |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['clients']} | {r['mode']} | {r['frames']} | {r['dropped']} | {r['fps']} | {r['p50_ms']} | {r['p99_ms']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=24, help="frames per client per case")
    parser.add_argument("--clients", default="1,4,8")
    parser.add_argument("--num-cpus", type=int, default=4)
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--wait", type=float, default=None, help="stream.batch_wait_timeout_s (default: the service's)")
    parser.add_argument("--rounds", type=int, default=1, help="ABBA rounds per client count (each mode runs 2x this)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "serve.json")
    args = parser.parse_args()
    if args.wait is None:
        from serving.settings import StreamSettings

        args.wait = StreamSettings().batch_wait_timeout_s
    frames = encode_frames(args.frames)
    from ray import serve
    import ray

    url, key = start(Path(tempfile.mkdtemp(prefix="vfx-bench-")), args.num_cpus, args.max_batch, args.wait)
    try:
        asyncio.run(run_case(url, key, frames[:4], 1, True))  # warm up both paths and every replica
        asyncio.run(run_case(url, key, frames[:4], 1, False))
        rows = []
        for clients in [int(c) for c in args.clients.split(",")]:
            runs: dict[bool, list[dict]] = {True: [], False: []}
            # ABBA, repeated: load from other work on a shared machine falls on both modes alike
            for batched in [True, False, False, True] * args.rounds:
                runs[batched].append(asyncio.run(run_case(url, key, frames, clients, batched)))
                print(json.dumps(runs[batched][-1]), flush=True)
            rows += [combine(runs[True]), combine(runs[False])]
    finally:
        serve.shutdown()
        ray.shutdown()
    meta = {"machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} CPU cores (shared), no GPU",
            "frames_per_client": args.frames, "size": "768x576", "max_batch": args.max_batch, "rounds": args.rounds,
            "batch_wait_timeout_s": args.wait}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    tmp.replace(args.out)
    print(markdown(rows, meta))


if __name__ == "__main__":
    main()
