"""Probe an untrusted file in a separate, resource-limited process before anything else opens it.

FFmpeg (or Pillow, for a style picture) parses hostile bytes here, so the parse happens in a
spawned child process that sets its own CPU-time, memory and file-size limits first thing (no
``preexec_fn``, which can deadlock a threaded parent), opens only local files through the
``file`` protocol with allowlisted demuxers, and decodes every video and audio packet so
truncated or damaged files are refused up front instead of failing a job halfway. The child
first reports the clip's duration; the decode budget then grows with it, so a long legitimate
4K file is not refused by a budget sized for a short one.
"""
from __future__ import annotations

import json
import os
import resource
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from serving.settings import UploadLimits

MAX_ANSWER_BYTES = 1 << 20
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP")
AUDIO_CONTAINERS = ("wav", "mp3", "flac", "ogg", "mov", "mp4", "m4a", "matroska", "webm")


class Refused(Exception):
    """An input the service will not process; ``status`` is the HTTP code, the message the reason."""

    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or {}


@dataclass(frozen=True)
class ProbeReport:
    container: str
    video_codec: str
    audio_codec: str | None
    width: int
    height: int
    fps: float
    frames: int
    concealed_packets: int = 0
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)


def probe_untrusted(path: Path, limits: UploadLimits, kind: str = "video") -> ProbeReport:
    """``kind``: video (a shot), image (a style picture) or audio (dub audio). Refused with a reason, or a report."""
    path = Path(path)
    if not path.is_file() or path.is_symlink():
        raise Refused(422, f"{path.name}: not a regular local file")
    size = path.stat().st_size
    if size > limits.max_bytes:
        raise Refused(413, f"file is {size} bytes; the limit is {limits.max_bytes}")
    if size == 0:
        raise Refused(422, "file is empty")
    command = [sys.executable, "-m", "serving.untrusted", kind, str(path.resolve()), limits.model_dump_json()]
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1",
           "PYTHONDONTWRITEBYTECODE": "1"}
    answer = _run_child(command, env, limits)
    if "refused" in answer:
        raise Refused(int(answer["status"]), answer["refused"])
    return ProbeReport(**answer["ok"])


def decode_budget_s(limits: UploadLimits, seconds: float | None) -> float:
    """Wall-clock (and CPU) seconds the probe may take for a clip of ``seconds`` (unknown: the longest allowed)."""
    clip = min(seconds if seconds and seconds > 0 else limits.max_seconds, limits.max_seconds)
    return limits.probe_timeout_s + clip * limits.probe_seconds_per_clip_second


def _run_child(command: list[str], env: dict[str, str], limits: UploadLimits) -> dict:
    started = time.monotonic()
    deadline = started + limits.probe_timeout_s
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                             env=env, start_new_session=True)
    buffer, answer = b"", None
    try:
        while answer is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Refused(422, f"probing took longer than its budget of {deadline - started:.0f} s; refused")
            ready, _, _ = select.select([child.stdout], [], [], remaining)
            if not ready:
                continue
            data = os.read(child.stdout.fileno(), 65536)
            if not data:
                break
            buffer += data
            if len(buffer) > MAX_ANSWER_BYTES:
                break
            while b"\n" in buffer and answer is None:
                line, buffer = buffer.split(b"\n", 1)
                message = json.loads(line) if line.startswith(b"{") else {}
                if "header" in message:
                    deadline = started + decode_budget_s(limits, message["header"].get("seconds"))
                elif "ok" in message or "refused" in message:
                    answer = message
    except json.JSONDecodeError:
        answer = None
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
        child.stdout.close()
    if answer is None:
        raise Refused(422, "the file could not be probed safely (the probe process failed)")
    return answer


def _confine(limits: UploadLimits) -> None:
    """Inside the child, before any hostile byte is parsed. The CPU soft limit starts at the budget
    for opening a file; the hard limit is the budget of the longest clip allowed, so the child can
    raise its soft limit once it knows the duration (a process may not raise its hard limit)."""
    memory = limits.probe_memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (int(limits.probe_timeout_s) + 1,
                                             int(decode_budget_s(limits, limits.max_seconds)) + 1))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write then fails with EFBIG instead of killing the probe
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))  # the probe writes nothing


def _budget_for(limits: UploadLimits, seconds: float | None) -> None:
    """Tell the parent the clip's duration and raise this process's CPU budget to match."""
    _say({"header": {"seconds": seconds}})
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    resource.setrlimit(resource.RLIMIT_CPU, (min(int(decode_budget_s(limits, seconds)) + 1, hard), hard))


def _say(message: dict) -> None:
    print(json.dumps(message), flush=True)


def _refuse(status: int, reason: str) -> dict:
    return {"refused": reason, "status": status}


def _open_av(path: str, demuxers: list[str] | tuple[str, ...]):
    import av

    return av.open("file:" + path, options={"protocol_whitelist": "file", "format_whitelist": ",".join(demuxers)},
                   metadata_errors="ignore")


def _duration_s(container, stream) -> float | None:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / 1_000_000
    return None


def _inspect(path: str, limits: UploadLimits) -> dict:
    import av

    try:
        container = _open_av(path, limits.containers)
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
        audio = container.streams.audio[0] if container.streams.audio else None
        audio_codec = audio.codec_context.name if audio is not None else None
        if audio_codec is not None and audio_codec not in limits.audio_codecs:
            return _refuse(415, f"audio codec {audio_codec} is not accepted; accepted: {', '.join(limits.audio_codecs)}")
        width, height = stream.codec_context.width, stream.codec_context.height
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        if not rate or not width or not height:
            return _refuse(422, "cannot tell the frame size or frame rate")
        fps = float(rate)
        if width > limits.max_width or height > limits.max_height:
            return _refuse(413, f"{width}x{height} is larger than the limit {limits.max_width}x{limits.max_height}")
        if fps > limits.max_fps:
            return _refuse(413, f"{fps:g} frames/s is above the limit {limits.max_fps:g}")
        seconds = _duration_s(container, stream)
        if seconds is not None and seconds > limits.max_seconds:
            return _refuse(413, f"{seconds:.0f} s is longer than the limit of {limits.max_seconds:g} s")
        _budget_for(limits, seconds)
        declared = stream.frames
        max_frames = int(limits.max_seconds * fps) + 1
        decoded, packets, damaged, audio_packets, audio_damaged = 0, 0, 0, 0, 0
        for packet in container.demux(*([stream, audio] if audio is not None else [stream])):
            if packet.stream is stream:
                packets += packet.size > 0
                try:
                    decoded += len(packet.decode())
                except av.FFmpegError:
                    damaged += 1
                if decoded > max_frames:
                    return _refuse(413, f"longer than the limit of {limits.max_seconds:g} s")
            else:
                audio_packets += packet.size > 0
                try:
                    packet.decode()
                except av.FFmpegError:
                    audio_damaged += 1
        if decoded == 0:
            return _refuse(422, "damaged: no decodable video frames")
        missing = max(0, declared - decoded) if declared else 0  # packets the decoder dropped without an error
        concealed = max(damaged, missing)
        allowed = limits.max_concealed_fraction * max(packets, declared or 0, 1)
        if missing > allowed:
            return _refuse(422, f"truncated: the header declares {declared} frames but only {decoded} are present")
        if concealed > allowed:
            return _refuse(422, f"damaged: {concealed} of {packets} video packets could not be decoded")
        if audio_damaged > limits.max_concealed_fraction * max(audio_packets, 1):
            return _refuse(422, f"damaged: {audio_damaged} of {audio_packets} audio packets could not be decoded")
        return {"ok": {"container": container.format.name, "video_codec": codec, "audio_codec": audio_codec,
                       "width": width, "height": height, "fps": fps, "frames": decoded, "concealed_packets": concealed,
                       "seconds": seconds or decoded / fps}}


def _inspect_audio(path: str, limits: UploadLimits) -> dict:
    """Dub audio: an allowlisted container and codec, decoded to the end within the duration limit."""
    import av

    try:
        container = _open_av(path, AUDIO_CONTAINERS)
    except av.FFmpegError as exc:
        return _refuse(422, f"not a readable audio file ({', '.join(AUDIO_CONTAINERS)}): {exc.strerror or type(exc).__name__}")
    with container:
        if not container.streams.audio:
            return _refuse(415, "no audio stream")
        stream = container.streams.audio[0]
        codec = stream.codec_context.name
        if codec not in limits.audio_codecs:
            return _refuse(415, f"audio codec {codec} is not accepted; accepted: {', '.join(limits.audio_codecs)}")
        seconds = _duration_s(container, stream)
        if seconds is not None and seconds > limits.max_seconds:
            return _refuse(413, f"{seconds:.0f} s is longer than the limit of {limits.max_seconds:g} s")
        _budget_for(limits, seconds)
        samples, rate = 0, stream.codec_context.sample_rate or 1
        for packet in container.demux(stream):
            try:
                samples += sum(f.samples for f in packet.decode())
            except av.FFmpegError:
                return _refuse(422, "damaged: an audio packet could not be decoded")
            if samples > limits.max_seconds * rate:
                return _refuse(413, f"longer than the limit of {limits.max_seconds:g} s")
        if samples == 0:
            return _refuse(422, "no decodable audio")
        return {"ok": {"container": container.format.name, "video_codec": "", "audio_codec": codec, "width": 0,
                       "height": 0, "fps": 0.0, "frames": 0, "seconds": samples / rate}}


def _inspect_image(path: str, limits: UploadLimits) -> dict:
    """A style picture: an allowlisted format whose header size is checked before the pixels are decoded."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = limits.max_width * limits.max_height
    _budget_for(limits, 0.0)
    try:
        with Image.open(path, formats=list(IMAGE_FORMATS)) as image:
            width, height = image.size
            if width > limits.max_width or height > limits.max_height:
                return _refuse(413, f"{width}x{height} is larger than the limit {limits.max_width}x{limits.max_height}")
            image.load()
            kind = image.format
    except Image.DecompressionBombError as exc:
        return _refuse(413, str(exc).split(".")[0])
    except Exception as exc:  # Pillow raises many types for hostile bytes; all mean the same here
        return _refuse(422, f"not a readable picture ({', '.join(IMAGE_FORMATS)}): {type(exc).__name__}")
    return {"ok": {"container": kind.lower(), "video_codec": "", "audio_codec": None, "width": width,
                   "height": height, "fps": 0.0, "frames": 1}}


def _main(kind: str, path: str, limits_json: str) -> None:
    limits = UploadLimits.model_validate_json(limits_json)
    _confine(limits)
    inspect = {"video": _inspect, "audio": _inspect_audio, "image": _inspect_image}[kind]
    _say(inspect(path, limits))


if __name__ == "__main__":
    _main(*sys.argv[1:4])
