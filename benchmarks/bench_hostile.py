"""The service under hostile load, on localhost, bounded in time (it stops by itself).

8 live streams at full rate (25 frames/s each, person matte + night, over WebSocket, two API keys),
then 4 shot jobs and 50 unauthenticated 200 MB uploads at once, each streamed from a generator
(nothing on disk), while a client polls ``GET /v1/jobs``; the streams run until every job is done. Reports: what the uploads got and
how much of each was sent before the answer, gateway and proxy RSS before/peak/after, the job
list's latency (p50/p99), that every job finished with its exact frame count, and the bytes the
state folder gained from the unauthenticated requests (must be 0).

    PYTHONPATH=. .venv/bin/python benchmarks/bench_hostile.py [--streams 8] [--uploads 50] [--mb 200] [--jobs 4]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from serve_helpers import SAMPLES, start_app, stop_app, submit  # noqa: E402

TIME_LIMIT_S = 600
FILE_PART = (b'--x\r\nContent-Disposition: form-data; name="file"; filename="shot.avi"\r\n'
             b"Content-Type: video/x-msvideo\r\n\r\n")


def replica_processes(title: str) -> list[psutil.Process]:
    """This run's Ray processes only (other Ray clusters may share the machine): descendants of this one."""
    found = []
    for process in psutil.Process().children(recursive=True):
        try:
            if any(title in part for part in process.cmdline()):
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return found


def rss_mb(processes: list[psutil.Process]) -> float:
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


def files_of(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*")
            if p.is_file() and ".sqlite" not in p.name}


def hostile_upload(url: str, megabytes: int) -> dict:
    sent = 0
    block = os.urandom(1 << 20)

    def body():
        nonlocal sent
        yield FILE_PART
        sent += len(FILE_PART)
        for _ in range(megabytes):
            yield block
            sent += len(block)

    started = time.perf_counter()
    try:
        response = httpx.post(url + "/v1/jobs", content=body(), timeout=120,
                              headers={"Content-Type": "multipart/form-data; boundary=x"})
        outcome = response.status_code
    except httpx.HTTPError as exc:
        outcome = type(exc).__name__
    return {"outcome": outcome, "sent_mb": sent / 2**20, "seconds": time.perf_counter() - started}


def percentile_ms(ordered: list[float], fraction: float) -> float | None:
    """The ``fraction`` percentile of sorted latencies in seconds, in ms (None when there are none)."""
    if not ordered:
        return None
    return 1000 * ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def stream_frames(count: int) -> list[bytes]:
    import cv2

    from vfx.video import FrameRange, FrameReader, probe

    reader = FrameReader(probe(SAMPLES / "vtest.avi"), FrameRange(0, count - 1))
    return [cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()
            for _, rgb in reader.frames()]


def live_stream(app, who: str, jpegs: list[bytes], ready: threading.Barrier, stop: threading.Event, fps: float = 25.0) -> dict:
    """One client sending at ``fps`` whatever the service keeps up with (it drops the oldest), until ``stop``."""
    from websockets.sync.client import connect

    with connect(app.ws_url, additional_headers=app.headers(who), open_timeout=60, max_size=2**24) as ws:
        ws.send(json.dumps({"subject": "person", "style": "night"}))
        assert json.loads(ws.recv(timeout=60))["type"] == "ready"
        counts = {"sent": 0, "returned": 0, "refused": 0, "summary": {}}

        def receive() -> None:
            while True:
                message = ws.recv(timeout=120)
                if isinstance(message, bytes):
                    counts["returned"] += 1
                    continue
                event = json.loads(message)
                if event.get("type") == "summary":
                    counts["summary"] = event
                    return
                counts["refused"] += 1

        receiver = threading.Thread(target=receive)
        receiver.start()
        ready.wait()
        next_at = time.monotonic()
        while not stop.is_set():
            ws.send(jpegs[counts["sent"] % len(jpegs)])
            counts["sent"] += 1
            next_at += 1.0 / fps
            time.sleep(max(0.0, next_at - time.monotonic()))
        ws.send(json.dumps({"type": "end"}))
        receiver.join(timeout=180)
    return {"sent": counts["sent"], "returned": counts["returned"], "refused": counts["refused"],
            "dropped": counts["summary"].get("dropped")}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--uploads", type=int, default=50)
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "hostile.json"))
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="vfx-bench-hostile-"))
    app = start_app(root, overrides={"jobs": {"chunk_frames": 12, "overlap_frames": 3, "poll_s": 0.5},
                                     "retention": {"min_free_bytes": 0}})
    try:
        gateway = replica_processes("ServeReplica:vfx:Gateway")
        proxy = replica_processes("ProxyActor")
        assert len(gateway) == 1 and len(proxy) == 1, (gateway, proxy)
        before_files = files_of(app.state_dir)
        rss = {"gateway_before": rss_mb(gateway), "proxy_before": rss_mb(proxy), "gateway_peak": 0.0, "proxy_peak": 0.0}
        latencies: list[float] = []
        stamps: list[float] = []  # when each GET /v1/jobs started
        burst = [float("inf"), float("inf")]  # start, end of the hostile uploads
        stop = threading.Event()
        deadline = time.monotonic() + TIME_LIMIT_S

        def watch() -> None:
            with app.client() as client:
                while not stop.is_set() and time.monotonic() < deadline:
                    rss["gateway_peak"] = max(rss["gateway_peak"], rss_mb(gateway))
                    rss["proxy_peak"] = max(rss["proxy_peak"], rss_mb(proxy))
                    started = time.perf_counter()
                    stamps.append(started)
                    client.get("/v1/jobs").raise_for_status()
                    latencies.append(time.perf_counter() - started)
                    time.sleep(0.1)

        watcher = threading.Thread(target=watch)
        watcher.start()
        jpegs = stream_frames(50)
        streams_ready, streams_stop = threading.Barrier(args.streams + 1), threading.Event()
        stream_pool = ThreadPoolExecutor(max(1, args.streams))
        streams = [stream_pool.submit(live_stream, app, "operator" if i % 2 else "operator2", jpegs, streams_ready, streams_stop)
                   for i in range(args.streams)]
        if args.streams:
            streams_ready.wait(timeout=120)
        streaming = [time.perf_counter(), float("inf")]
        with app.client() as client:
            jobs = [submit(client, {"restyle": {"style": "night"}}, frames=f"{100 * i}-{100 * i + 23}",
                                path=SAMPLES / "vtest.avi").json()["id"] for i in range(args.jobs)]
        hostile_started = burst[0] = time.perf_counter()
        with ThreadPoolExecutor(args.uploads) as pool:
            uploads = list(pool.map(lambda _: hostile_upload(app.url, args.mb), range(args.uploads)))
        burst[1] = time.perf_counter()
        hostile_seconds = burst[1] - hostile_started
        from serving.store import JobStore

        job_dirs = {Path(JobStore(f"sqlite:///{app.state_dir / 'jobs.sqlite'}").job(j)["job_dir"]).name for j in jobs}
        gained = {k: v for k, v in files_of(app.state_dir).items()  # anything new outside the 4 jobs' own folders
                  if before_files.get(k) != v and not (k.startswith("jobs/") and k.split("/")[1] in job_dirs)}
        finished = {}
        with app.client() as client:
            while time.monotonic() < deadline and len(finished) < len(jobs):
                for job_id in jobs:
                    job = client.get(f"/v1/jobs/{job_id}").json()
                    if job["state"] in ("done", "failed", "cancelled"):
                        frames = None
                        if job["state"] == "done":
                            out = root / f"{job_id}.mp4"
                            out.write_bytes(client.get(f"/v1/jobs/{job_id}/output").content)
                            from vfx.video import probe

                            frames = probe(out).frame_count
                        finished[job_id] = {"state": job["state"], "frames": frames}
                time.sleep(1)
        streams_stop.set()
        streaming[1] = time.perf_counter()
        stream_results = [s.result(timeout=240) for s in streams]
        stream_pool.shutdown()
        stop.set()
        watcher.join()
        rss.update(gateway_after=rss_mb(gateway), proxy_after=rss_mb(proxy))
        ordered = sorted(latencies)
        during = sorted(l for l, t in zip(latencies, stamps) if burst[0] <= t <= burst[1])
        after = sorted(l for l, t in zip(latencies, stamps) if t > burst[1])
        while_streaming = sorted(l for l, t in zip(latencies, stamps) if streaming[0] <= t <= streaming[1])
        outcomes: dict[str, int] = {}
        for upload in uploads:
            outcomes[str(upload["outcome"])] = outcomes.get(str(upload["outcome"]), 0) + 1
        result = {
            "uploads": args.uploads, "upload_mb": args.mb, "outcomes": outcomes,
            "sent_mb_median": statistics.median(u["sent_mb"] for u in uploads),
            "sent_mb_max": max(u["sent_mb"] for u in uploads),
            "upload_seconds_median": statistics.median(u["seconds"] for u in uploads),
            "hostile_wall_s": hostile_seconds,
            "state_files_gained_outside_jobs": gained,
            "state_bytes_gained_outside_jobs": sum(gained.values()),
            "rss_mb": {k: round(v, 1) for k, v in rss.items()},
            "jobs_list": {"requests": len(ordered), "p50_ms": percentile_ms(ordered, 0.5),
                          "p99_ms": percentile_ms(ordered, 0.99),
                          "during_uploads": {"requests": len(during), "max_ms": 1000 * max(during, default=0)},
                          "while_jobs_render_after": {"requests": len(after),
                                                      "p99_ms": percentile_ms(after, 0.99)}},
            "jobs": finished,
            "streams": {"count": args.streams, "seconds": round(streaming[1] - streaming[0], 1),
                        "sent": sum(s["sent"] for s in stream_results),
                        "returned": sum(s["returned"] for s in stream_results),
                        "dropped": sum(s["dropped"] or 0 for s in stream_results),
                        "refused": sum(s["refused"] for s in stream_results),
                        "jobs_list_while_streaming": {
                            "requests": len(while_streaming),
                            "p50_ms": percentile_ms(while_streaming, 0.5),
                            "p99_ms": percentile_ms(while_streaming, 0.99)}},
            "stream_gateway_rss_mb": round(rss_mb(replica_processes("StreamGateway")), 1),
            "frames_rss_mb": round(rss_mb(replica_processes("vfx-stream:Frames")), 1),
        }
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2))
        print(json.dumps(result, indent=2))
    finally:
        stop_app()


if __name__ == "__main__":
    main()
