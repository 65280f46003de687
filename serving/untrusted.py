"""Probe an untrusted video in a separate, resource-limited process before anything else opens it.

FFmpeg parses hostile bytes here, so the parse happens in a child process with a CPU-time,
memory and wall-clock limit, only the ``file`` protocol (no URLs, no playlists pulling other
files) and only allowlisted demuxers. The child decodes every frame so truncated or damaged
files are refused up front instead of failing a job halfway.
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from serving.settings import UploadLimits


class Refused(Exception):
    """An input the service will not process; ``status`` is the HTTP code, the message the reason."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class ProbeReport:
    container: str
    video_codec: str
    audio_codec: str | None
    width: int
    height: int
    fps: float
    frames: int


def probe_untrusted(path: Path, limits: UploadLimits) -> ProbeReport:
    path = Path(path)
    if not path.is_file() or path.is_symlink():
        raise Refused(422, f"{path.name}: not a regular local file")
    size = path.stat().st_size
    if size > limits.max_bytes:
        raise Refused(413, f"file is {size} bytes; the limit is {limits.max_bytes}")
    if size == 0:
        raise Refused(422, "file is empty")
    command = [sys.executable, "-m", "serving.untrusted", str(path.resolve()), limits.model_dump_json()]
    cpu_seconds = int(limits.probe_timeout_s) + 1
    memory = limits.probe_memory_mb * 1024 * 1024

    def confine() -> None:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds))
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))  # the probe writes nothing

    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    try:
        done = subprocess.run(command, capture_output=True, timeout=limits.probe_timeout_s, preexec_fn=confine,
                              env=env, text=True)
    except subprocess.TimeoutExpired:
        raise Refused(422, f"probing took longer than {limits.probe_timeout_s:g} s; refused") from None
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise Refused(422, "the file could not be probed safely (the probe process failed)")
    answer = json.loads(lines[-1])
    if "refused" in answer:
        raise Refused(int(answer["status"]), answer["refused"])
    return ProbeReport(**answer["ok"])


def _inspect(path: str, limits: UploadLimits) -> dict:
    import av

    demuxers = ",".join(limits.containers)
    try:
        container = av.open("file:" + path, options={"protocol_whitelist": "file", "format_whitelist": demuxers},
                            metadata_errors="ignore")
    except av.FFmpegError as exc:
        return _refuse(422, f"not a readable video in an allowed container ({', '.join(limits.containers)}): "
                            f"{exc.strerror or type(exc).__name__}")
    with container:
        if not container.streams.video:
            return _refuse(415, "no video stream")
        stream = container.streams.video[0]
        codec = stream.codec_context.name
        if codec not in limits.video_codecs:
            return _refuse(415, f"video codec {codec} is not accepted; accepted: {', '.join(limits.video_codecs)}")
        audio = container.streams.audio[0].codec_context.name if container.streams.audio else None
        if audio is not None and audio not in limits.audio_codecs:
            return _refuse(415, f"audio codec {audio} is not accepted; accepted: {', '.join(limits.audio_codecs)}")
        width, height = stream.codec_context.width, stream.codec_context.height
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        if not rate or not width or not height:
            return _refuse(422, "cannot tell the frame size or frame rate")
        fps = float(rate)
        if width > limits.max_width or height > limits.max_height:
            return _refuse(413, f"{width}x{height} is larger than the limit {limits.max_width}x{limits.max_height}")
        if fps > limits.max_fps:
            return _refuse(413, f"{fps:g} frames/s is above the limit {limits.max_fps:g}")
        declared = stream.frames
        max_frames = int(limits.max_seconds * fps) + 1
        decoded, damaged = 0, 0
        for packet in container.demux(stream):
            try:
                decoded += len(packet.decode())
            except av.FFmpegError:
                damaged += 1
            if decoded > max_frames:
                return _refuse(413, f"longer than the limit of {limits.max_seconds:g} s")
        if damaged:
            return _refuse(422, f"damaged: {damaged} video packets could not be decoded")
        if decoded == 0:
            return _refuse(422, "damaged: no decodable video frames")
        if declared and decoded < declared:
            return _refuse(422, f"truncated: the header declares {declared} frames but only {decoded} are present")
        return {"ok": {"container": container.format.name, "video_codec": codec, "audio_codec": audio,
                       "width": width, "height": height, "fps": fps, "frames": decoded}}


def _refuse(status: int, reason: str) -> dict:
    return {"refused": reason, "status": status}


if __name__ == "__main__":
    print(json.dumps(_inspect(sys.argv[1], UploadLimits.model_validate_json(sys.argv[2]))), flush=True)
