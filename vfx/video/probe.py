"""What a source is: size, rate, frame numbers, audio; and frame ranges such as ``1001-1100``."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from vfx.errors import VfxError
from vfx.video.sequence import is_sequence_pattern, read_image_rgb, sequence_files

DEFAULT_SEQUENCE_FPS = Fraction(24)


@dataclass(frozen=True)
class FrameRange:
    first: int
    last: int  # inclusive

    def __len__(self) -> int:
        return self.last - self.first + 1

    def __contains__(self, number: object) -> bool:
        return isinstance(number, int) and self.first <= number <= self.last


@dataclass(frozen=True)
class VideoInfo:
    path: str
    width: int
    height: int
    fps: Fraction
    first_frame: int  # 0 for containers; the lowest file number for sequences
    frame_count: int
    is_sequence: bool
    video_codec: str
    audio_codec: str | None
    container: str

    @property
    def last_frame(self) -> int:
        return self.first_frame + self.frame_count - 1

    @property
    def full_range(self) -> FrameRange:
        return FrameRange(self.first_frame, self.last_frame)

    @property
    def duration(self) -> float:
        return self.frame_count / float(self.fps)


def parse_frame_range(text: str | None, info: VideoInfo) -> FrameRange:
    """``None`` -> the whole source; ``A-B`` inclusive; ``A-`` to the end; ``A`` one frame."""
    if not text:
        return info.full_range
    match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d*)\s*)?", text)
    if match is None:
        raise VfxError(f"--frames {text!r}: expected FIRST-LAST, for example 1001-1100")
    first = int(match.group(1))
    tail = match.group(2)
    last = first if tail is None else (int(tail) if tail else info.last_frame)
    if first > last:
        raise VfxError(f"--frames {text}: first frame {first} is after last frame {last}")
    if first < info.first_frame or last > info.last_frame:
        raise VfxError(
            f"--frames {text}: outside the source, which has frames {info.first_frame}-{info.last_frame}"
        )
    return FrameRange(first, last)


def probe(path: str | os.PathLike) -> VideoInfo:
    """Read a source's header (and count its frames when the container does not say)."""
    path = str(path)
    if is_sequence_pattern(path):
        return _probe_sequence(path)
    if not Path(path).exists():
        raise VfxError(f"{path}: no such file")
    if Path(path).is_dir():
        raise VfxError(f"{path}: is a directory, not a video (for an image sequence give a pattern like shot.%04d.png)")
    try:
        with av.open(path, metadata_errors="ignore") as container:
            if not container.streams.video:
                raise VfxError(f"{path}: has no video stream")
            stream = container.streams.video[0]
            fps = stream.average_rate or stream.guessed_rate or stream.base_rate
            if not fps:
                raise VfxError(f"{path}: cannot tell its frame rate")
            count = stream.frames or _count_video_packets(container, stream)
            audio = container.streams.audio[0].codec_context.name if container.streams.audio else None
            width, height = stream.codec_context.width, stream.codec_context.height
            if not width or not height or not count:
                raise VfxError(f"{path}: no decodable video frames")
            return VideoInfo(
                path=path, width=width, height=height, fps=Fraction(fps), first_frame=0,
                frame_count=count, is_sequence=False, video_codec=stream.codec_context.name,
                audio_codec=audio, container=container.format.name,
            )
    except av.FFmpegError as exc:
        raise VfxError(f"{path}: not a readable video ({exc.strerror or type(exc).__name__})") from None


def _count_video_packets(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> int:
    count = sum(1 for packet in container.demux(stream) if packet.size)
    container.seek(0)
    return count


def _probe_sequence(pattern: str) -> VideoInfo:
    files = sequence_files(pattern)
    if not files:
        raise VfxError(f"{pattern}: no files match this image-sequence pattern")
    numbers = sorted(files)
    missing = len(numbers) - (numbers[-1] - numbers[0] + 1)
    if missing:
        raise VfxError(f"{pattern}: sequence {numbers[0]}-{numbers[-1]} has {-missing} missing frames")
    first = read_image_rgb(files[numbers[0]])
    return VideoInfo(
        path=pattern, width=first.shape[1], height=first.shape[0], fps=DEFAULT_SEQUENCE_FPS,
        first_frame=numbers[0], frame_count=len(numbers), is_sequence=True,
        video_codec=Path(pattern).suffix.lstrip(".").lower(), audio_codec=None, container="image2",
    )
