"""The batched, overlapped pipeline against a naive sequential loop, on real footage.

Naive: decode one frame, run the same steps on it, encode it, repeat, all on one thread.
Pipeline: `vfx.job.run_job` as the command line runs it (batches of 8, decode / segment /
restyle / encode in their own threads with bounded queues, per-frame work over a thread pool).

Each measurement runs in a fresh process so its peak RSS is its own. Results go to
benchmarks/RESULTS.md between this benchmark's markers.

    .venv/bin/python benchmarks/bench_pipeline.py [--samples DIR] [--style oil]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def naive_loop(source: str, output: str, style: str, frames: str) -> int:
    from vfx.config import PipelineConfig, with_overrides
    from vfx.frames import ShotState
    from vfx.job import build_steps
    from vfx.video import FrameReader, FrameWriter, parse_frame_range, probe

    config = with_overrides(PipelineConfig(), {"segment.subject": ["person"], "restyle.style": style,
                                               "output.provenance": False})
    info = probe(source)
    frame_range = parse_frame_range(frames, info)
    steps = build_steps(config, "cpu")
    shot = ShotState(width=info.width, height=info.height, fps=float(info.fps), first_frame=frame_range.first,
                     last_frame=frame_range.last, source_path=source)
    writer = FrameWriter(output, info, frame_range, crf=config.output.crf, preset=config.output.preset)
    count = 0
    for batch in FrameReader(info, frame_range).batches(1):
        for step in steps:
            batch = step(batch, shot)
        writer.write(batch)
        count += 1
    writer.close()
    return count


def pipeline(source: str, output: str, style: str, frames: str) -> int:
    from vfx.config import PipelineConfig, with_overrides
    from vfx.job import JobSpec, run_job

    config = with_overrides(PipelineConfig(), {"segment.subject": ["person"], "restyle.style": style,
                                               "output.provenance": False})
    return run_job(JobSpec(source, output, config, frames=frames)).frames


def measure_one(mode: str, source: str, style: str, frames: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        count = (naive_loop if mode == "naive" else pipeline)(source, str(Path(tmp) / "out.mp4"), style, frames)
        seconds = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"mode": mode, "frames": count, "seconds": seconds, "fps": count / seconds, "peak_rss_mib": peak_kib / 1024}


def run_in_child(mode: str, source: str, style: str, frames: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", mode, "--source", source, "--style", style, "--frames", frames],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def median_run(runs: list[dict]) -> dict:
    ordered = sorted(runs, key=lambda r: r["fps"])
    best = dict(ordered[len(ordered) // 2])
    best["all_fps"] = [round(r["fps"], 2) for r in runs]
    best["peak_rss_mib"] = max(r["peak_rss_mib"] for r in runs)
    return best


def write_results(rows: list[dict], style: str, repeats: int) -> str:
    by = {(r["mode"], r["frames"]): r for r in rows}
    lengths = sorted({r["frames"] for r in rows})
    lines = [
        "<!-- bench_pipeline:start -->",
        "## Pipeline vs naive loop (benchmarks/bench_pipeline.py)",
        "",
        f"vtest.avi (768x576, MS-MPEG4), subject `person` (tiled mediapipe), style `{style}`, H.264 out; "
        f"{os.cpu_count()} CPU cores, no GPU. Each cell: the median of {repeats} runs (naive and pipeline alternating, "
        f"each run in a fresh process; peak RSS is the largest of the runs). Run on {time.strftime('%Y-%m-%d')}.",
        "",
        "| frames | naive frames/s | pipeline frames/s | speed-up | naive peak RSS | pipeline peak RSS |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for n in lengths:
        a, b = by[("naive", n)], by[("pipeline", n)]
        lines.append(f"| {n} | {a['fps']:.2f} ({', '.join(map(str, a['all_fps']))}) | "
                     f"{b['fps']:.2f} ({', '.join(map(str, b['all_fps']))}) | **{b['fps'] / a['fps']:.2f}x** | "
                     f"{a['peak_rss_mib']:.0f} MiB | {b['peak_rss_mib']:.0f} MiB |")
    short, long = by[("pipeline", lengths[0])], by[("pipeline", lengths[-1])]
    growth = long["peak_rss_mib"] / short["peak_rss_mib"] - 1
    lines += ["", f"Pipeline peak RSS, {lengths[-1]} vs {lengths[0]} frames: {growth:+.1%} (target: within 10%). "
              f"Speed-up target: at least 1.6x.", "<!-- bench_pipeline:end -->"]
    return "\n".join(lines)


def update_results_file(section: str) -> None:
    path = REPO / "benchmarks" / "RESULTS.md"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    start, end = "<!-- bench_pipeline:start -->", "<!-- bench_pipeline:end -->"
    if start in text and end in text:
        text = text[: text.index(start)] + section + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", default=None)
    parser.add_argument("--style", default="oil")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", choices=["naive", "pipeline"])
    parser.add_argument("--source")
    parser.add_argument("--frames")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure_one(args.child, args.source, args.style, args.frames)))
        return
    from vfx.cli_run import find_samples

    source = str(find_samples(args.samples) / "vtest.avi")
    rows = []
    for frames in ("0-199", "0-794"):  # vtest.avi has 795 frames: the whole clip stands for "800"
        runs: dict[str, list[dict]] = {"naive": [], "pipeline": []}
        for _ in range(args.repeats):
            for mode in ("naive", "pipeline"):
                row = run_in_child(mode, source, args.style, frames)
                print(f"{mode:8s} {row['frames']:4d} frames  {row['fps']:6.2f} frames/s  peak RSS {row['peak_rss_mib']:.0f} MiB", flush=True)
                runs[mode].append(row)
        rows += [median_run(runs["naive"]), median_run(runs["pipeline"])]
    section = write_results(rows, args.style, args.repeats)
    update_results_file(section)
    print(section)


if __name__ == "__main__":
    main()
