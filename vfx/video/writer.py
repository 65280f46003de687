"""Encode FrameBatches to H.264 MP4 (audio kept) or image sequences, atomically."""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from vfx.errors import VfxError
from vfx.frames import FrameBatch
from vfx.video.probe import FrameRange, VideoInfo
from vfx.video.sequence import SEQUENCE_EXTENSIONS, frame_path, is_sequence_pattern, write_image_rgb

log = logging.getLogger(__name__)

CONTAINER_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
# Audio codecs each container takes as a stream copy; anything else is re-encoded to AAC.
COPYABLE_AUDIO = {
    "mp4": {"aac", "mp3", "ac3", "eac3", "alac", "opus", "flac"},
    "mov": {"aac", "mp3", "ac3", "eac3", "alac", "pcm_s16le", "pcm_s24le"},
    "matroska": None,  # takes any codec
}

STANDARD_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 8: "7.1"}


def check_output_path(path: str) -> None:
    """Refuse an output we could not write before any work is done."""
    target = Path(path)
    suffix = target.suffix.lower()
    if is_sequence_pattern(path):
        if suffix not in SEQUENCE_EXTENSIONS:
            raise VfxError(f"{path}: image sequences can be {', '.join(sorted(SEQUENCE_EXTENSIONS))}")
    elif suffix not in CONTAINER_FORMATS:
        raise VfxError(f"{path}: output must be {', '.join(CONTAINER_FORMATS)} or an image-sequence pattern like out.%04d.png")
    directory = target.parent if str(target.parent) else Path(".")
    if not directory.is_dir():
        raise VfxError(f"{path}: directory {directory} does not exist")
    if not os.access(directory, os.W_OK):
        raise VfxError(f"{path}: directory {directory} is not writable")
    if target.is_dir():
        raise VfxError(f"{path}: is a directory")


class _AtomicTarget:
    """A temporary file (or folder, for sequences) beside the target, renamed into place on commit."""

    def __init__(self, path: str):
        self.path = path
        self.sequence = is_sequence_pattern(path)
        directory = Path(path).parent
        if self.sequence:
            self.tmp = Path(tempfile.mkdtemp(prefix=".vfx-partial-", dir=directory))
        else:
            fd, tmp = tempfile.mkstemp(prefix=f".{Path(path).stem}.partial-", suffix=Path(path).suffix, dir=directory)
            os.close(fd)
            self.tmp = Path(tmp)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; the output should be like any other file

    def file_for(self, number: int) -> Path:
        return self.tmp / frame_path(Path(self.path).name, number).name

    def commit(self) -> None:
        if self.sequence:
            for item in sorted(self.tmp.iterdir()):
                os.replace(item, Path(self.path).parent / item.name)
            self.tmp.rmdir()
        else:
            os.replace(self.tmp, self.path)

    def abort(self) -> None:
        if self.sequence:
            shutil.rmtree(self.tmp, ignore_errors=True)
        else:
            self.tmp.unlink(missing_ok=True)


class _AudioTrack:
    """Moves audio from ``source`` between ``start`` and ``end`` seconds into ``output``, interleaved
    with the video; a stream copy when ``whole`` (nothing to trim) and the container takes the codec."""

    def __init__(self, source: str, output: av.container.OutputContainer, start: float, end: float, whole: bool):
        try:
            self.input = av.open(source, metadata_errors="ignore")
        except av.FFmpegError as exc:
            raise VfxError(f"{source}: not a readable audio file ({exc})") from None
        if not self.input.streams.audio:
            self.input.close()
            raise VfxError(f"{source}: has no audio stream")
        self.in_stream = self.input.streams.audio[0]
        self.start, self.end = start, end
        allowed = COPYABLE_AUDIO.get(output.format.name.split(",")[0], set())
        self.copy = whole and (allowed is None or self.in_stream.codec_context.name in allowed)
        if self.copy:
            self.out_stream = output.add_stream_from_template(self.in_stream)
            self.packets = self.input.demux(self.in_stream)
        else:
            rate = self.in_stream.codec_context.sample_rate or 48000
            # the standard layout for the channel count: WAVs often carry an unordered "1 channels"
            # layout, which the AAC encoder refuses
            layout = STANDARD_LAYOUTS.get(self.in_stream.codec_context.channels, "stereo")
            self.out_stream = output.add_stream("aac", rate=rate, layout=layout)
            # FFmpeg's AAC encoder refuses more than 6144 bits per channel per 1024-sample frame
            channels = self.out_stream.codec_context.layout.nb_channels
            self.out_stream.bit_rate = min(96_000 * channels, 6144 * rate * channels // 1024 - 1)
            self.resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate, frame_size=1024)
            self.frames = self._decoded_frames()
            self.samples_written = 0
        self.output = output
        self.done = False

    def write_until(self, seconds: float) -> None:
        """Mux audio up to ``seconds`` of output time (relative to the range start)."""
        while not self.done:
            if self.copy:
                packet = next(self.packets, None)
                if packet is None:
                    self.done = True
                    break
                if packet.dts is None:
                    continue
                packet.stream = self.out_stream
                self.output.mux(packet)
                if packet.pts is not None and float(packet.pts * packet.time_base) >= seconds:
                    break
            else:
                frame = next(self.frames, None)
                if frame is None:
                    self._flush()
                    break
                self._encode_trimmed(frame)
                if frame.time is not None and frame.time - self.start >= seconds:
                    break

    def _decoded_frames(self):
        for packet in self.input.demux(self.in_stream):
            try:
                yield from packet.decode()
            except av.InvalidDataError:
                continue  # a damaged audio packet is silence, not the end of the track

    def _encode_trimmed(self, frame: av.AudioFrame) -> None:
        if frame.time is None:
            return
        rate = frame.sample_rate
        begin = max(0, int(round((self.start - frame.time) * rate)))
        end = min(frame.samples, int(round((self.end - frame.time) * rate)))
        if end <= begin:
            if frame.time >= self.end:
                self._flush()
            return
        if begin > 0 or end < frame.samples:
            planes = frame.to_ndarray()
            planes = planes[:, begin:end] if frame.format.is_planar else planes[:, begin * len(frame.layout.channels): end * len(frame.layout.channels)]
            trimmed = av.AudioFrame.from_ndarray(np.ascontiguousarray(planes), format=frame.format.name, layout=frame.layout.name)
            trimmed.sample_rate = rate
            frame = trimmed
        frame.pts = None
        for resampled in self.resampler.resample(frame):
            self._encode(resampled)

    def _encode(self, frame: av.AudioFrame | None) -> None:
        if frame is not None:
            frame.pts = self.samples_written
            frame.time_base = Fraction(1, frame.sample_rate)
            self.samples_written += frame.samples
        for packet in self.out_stream.encode(frame):
            self.output.mux(packet)

    def _flush(self) -> None:
        if self.done:
            return
        self.done = True
        for resampled in self.resampler.resample(None):
            self._encode(resampled)
        self._encode(None)

    def finish(self) -> None:
        self.write_until(float("inf"))
        self.input.close()


class FrameWriter:
    """Writes a shot to MP4/MOV/MKV (H.264 yuv420p, faststart, source audio) or an image sequence.

    Nothing appears at ``path`` until ``close()`` succeeds; ``abort()`` removes the partial file.
    """

    def __init__(self, path: str, info: VideoInfo, frame_range: FrameRange, keep_audio: bool = True,
                 crf: int = 18, preset: str = "veryfast", with_alpha: bool = False, audio_path: str | None = None,
                 lossless_rgb: bool = False):
        """``audio_path``: a new soundtrack (e.g. a dub for lip-sync) starting at the range's first frame,
        used instead of the source's audio. ``lossless_rgb``: H.264 4:4:4 RGB at qp 0 (libx264rgb), which
        decodes to exactly the frames written: for intermediates that are encoded again later."""
        check_output_path(path)
        self.path = path
        self.info = info
        self.range = frame_range
        self.with_alpha = with_alpha
        self.lossless_rgb = lossless_rgb
        self.target = _AtomicTarget(path)
        self.frames_written = 0
        self.container: av.container.OutputContainer | None = None
        self.audio: _AudioTrack | None = None
        if not self.target.sequence:
            try:
                self._open_container(keep_audio, crf, preset, audio_path)
            except BaseException:
                self.abort()
                raise

    def _open_container(self, keep_audio: bool, crf: int, preset: str, audio_path: str | None) -> None:
        fmt = CONTAINER_FORMATS[Path(self.path).suffix.lower()]
        options = {"movflags": "+faststart"} if fmt in ("mp4", "mov") else {}
        self.container = av.open(str(self.target.tmp), mode="w", format=fmt, options=options)
        if self.lossless_rgb:
            stream = self.container.add_stream("libx264rgb", rate=self.info.fps)
            stream.width, stream.height, stream.pix_fmt = self.info.width, self.info.height, "rgb24"
            stream.options = {"crf": "0", "preset": preset}
        else:
            stream = self.container.add_stream("libx264", rate=self.info.fps)
            stream.width = self.info.width + self.info.width % 2  # yuv420p needs even sizes
            stream.height = self.info.height + self.info.height % 2
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": str(crf), "preset": preset}
        stream.codec_context.time_base = Fraction(1) / self.info.fps
        self.stream = stream
        duration = len(self.range) / float(self.info.fps)
        if audio_path is not None:
            self.audio = _AudioTrack(audio_path, self.container, 0.0, duration, whole=False)
        elif keep_audio and self.info.audio_codec and not self.info.is_sequence:
            start = (self.range.first - self.info.first_frame) / float(self.info.fps)
            self.audio = _AudioTrack(self.info.path, self.container, start, start + duration,
                                     whole=self.range == self.info.full_range)

    def write(self, batch: FrameBatch) -> None:
        for i, number in enumerate(batch.indices.tolist()):
            if self.container is None:
                alpha = batch.matte[i] if (self.with_alpha and batch.matte is not None) else None
                write_image_rgb(self.target.file_for(number), batch.frames[i], alpha)
            else:
                self._encode(batch.frames[i], number - self.range.first)
            self.frames_written += 1
        if self.audio is not None:
            self.audio.write_until(self.frames_written / float(self.info.fps))

    def _encode(self, rgb: np.ndarray, pts: int) -> None:
        if not self.lossless_rgb and (rgb.shape[0] % 2 or rgb.shape[1] % 2):
            rgb = np.pad(rgb, ((0, rgb.shape[0] % 2), (0, rgb.shape[1] % 2), (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts = pts
        for packet in self.stream.encode(frame):
            self.container.mux(packet)

    def close(self) -> None:
        if self.frames_written != len(self.range):
            self.abort()
            raise VfxError(f"{self.path}: wrote {self.frames_written} of {len(self.range)} frames; output discarded")
        if self.container is not None:
            for packet in self.stream.encode(None):
                self.container.mux(packet)
            if self.audio is not None:
                self.audio.finish()
            self.container.close()
        self.target.commit()

    def abort(self) -> None:
        if self.container is not None:
            try:
                self.container.close()
            except av.FFmpegError:
                pass
            self.container = None
        if self.audio is not None:
            self.audio.input.close()
            self.audio = None
        self.target.abort()


def alpha_to_uint8(alpha: np.ndarray) -> np.ndarray:
    """8-bit matte where 255 means exactly 1: the untouched subject. A soft edge never rounds up to it,
    so a compositor keying on 255 never takes a restyled pixel for an original one."""
    levels = np.minimum(np.round(np.clip(alpha, 0.0, 1.0) * 255.0), 254.0)
    return np.where(alpha >= 1.0, 255, levels).astype(np.uint8)


def subject_matte_path(path: str, subject: str) -> str:
    """Where one subject's matte goes beside ``path``: m.mp4 -> m.NAME.mp4, m.%04d.png -> m.NAME.%04d.png."""
    folder, name = os.path.split(path)
    if "%" in name:
        cut = name.index("%")
        return os.path.join(folder, f"{name[:cut].rstrip('._') or 'matte'}.{subject}.{name[cut:]}")
    stem, extension = os.path.splitext(name)
    return os.path.join(folder, f"{stem}.{subject}{extension}")


class MatteWriter:
    """Writes the subject matte as a grayscale MP4 or a PNG/EXR sequence, atomically.

    Up to three subjects (``batch.mattes``) go one per channel: the first red, the second green,
    the third blue. More than three: ``path`` holds their union (grey) and each subject gets its
    own grey matte beside it (subject_matte_path).
    """

    def __init__(self, path: str, info: VideoInfo, frame_range: FrameRange, lossless_rgb: bool = False):
        self.path, self.frame_range, self.lossless_rgb = path, frame_range, lossless_rgb
        self.info = VideoInfo(**{**info.__dict__, "audio_codec": None})
        self.writer = self._writer(path)
        self.subjects: dict[str, FrameWriter] = {}

    def _writer(self, path: str) -> FrameWriter:
        return FrameWriter(path, self.info, self.frame_range, keep_audio=False, crf=12, lossless_rgb=self.lossless_rgb)

    def write(self, batch: FrameBatch) -> None:
        if batch.matte is None:
            raise VfxError("--matte needs a subject matte, but no segmentation step ran")
        many = batch.mattes and len(batch.mattes) > 3
        if batch.mattes and 1 < len(batch.mattes) <= 3:
            channels = list(batch.mattes.values()) + [np.zeros_like(batch.matte)] * (3 - len(batch.mattes))
            rgb = alpha_to_uint8(np.stack(channels, axis=-1))
        else:
            rgb = _grey_rgb(batch.matte)
        self.writer.write(FrameBatch(frames=rgb, indices=batch.indices, timestamps=batch.timestamps))
        for subject, matte in (batch.mattes.items() if many else ()):
            if subject not in self.subjects:
                self.subjects[subject] = self._writer(subject_matte_path(self.path, subject))
            self.subjects[subject].write(FrameBatch(frames=_grey_rgb(matte), indices=batch.indices, timestamps=batch.timestamps))

    def close(self) -> None:
        for writer in [self.writer, *self.subjects.values()]:
            writer.close()

    def abort(self) -> None:
        for writer in [self.writer, *self.subjects.values()]:
            writer.abort()


def _grey_rgb(matte: np.ndarray) -> np.ndarray:
    return np.repeat(alpha_to_uint8(matte)[..., None], 3, axis=-1)


# What Chromium plays in MP4. AC-3 and E-AC-3 (stream-copied from many sources) it does not.
BROWSER_AUDIO = {"aac", "mp3", "opus", "flac"}


def browser_review_copy(source: str, path: str) -> bool:
    """Write ``path`` (MP4): ``source``'s video stream-copied, its audio re-encoded to AAC, for a
    browser that cannot play the source's audio codec. Returns False, writing nothing, when the
    source has no audio or audio a browser plays already."""
    try:
        with av.open(source, metadata_errors="ignore") as container:
            audio = container.streams.audio[0].codec_context.name if container.streams.audio else None
            seconds = float(container.duration / av.time_base) if container.duration else 24 * 3600.0
    except av.FFmpegError as exc:
        raise VfxError(f"{source}: not a readable video ({exc})") from None
    if audio is None or audio in BROWSER_AUDIO:
        return False
    target = _AtomicTarget(path)
    try:
        with av.open(source, metadata_errors="ignore") as inputs, \
                av.open(str(target.tmp), mode="w", format="mp4", options={"movflags": "+faststart"}) as output:
            video_in = inputs.streams.video[0]
            video_out = output.add_stream_from_template(video_in)
            track = _AudioTrack(source, output, 0.0, seconds + 1.0, whole=False)
            for packet in inputs.demux(video_in):
                if packet.dts is None:
                    continue
                packet.stream = video_out
                output.mux(packet)
                if packet.pts is not None:
                    track.write_until(float(packet.pts * packet.time_base))
            track.finish()
        target.commit()
    except BaseException:
        target.abort()
        raise
    return True
