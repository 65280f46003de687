"""Decode a source into FrameBatches, concealing frames that cannot be decoded."""
from __future__ import annotations

import logging
from collections.abc import Iterator

import av
import numpy as np

from vfx.errors import VfxError
from vfx.frames import FrameBatch
from vfx.video.probe import FrameRange, VideoInfo
from vfx.video.sequence import read_image_rgb, sequence_files

log = logging.getLogger(__name__)


class FrameReader:
    """Yields every frame number of ``frame_range`` exactly once, in order.

    A frame the decoder cannot produce is replaced by the nearest earlier good frame (the next
    good one at the very start) and its number is added to ``bad_frames``; with ``strict`` the
    first bad frame raises instead. Frame count and timing of the output never change.
    """

    def __init__(self, info: VideoInfo, frame_range: FrameRange | None = None, strict: bool = False):
        self.info = info
        self.range = frame_range or info.full_range
        self.strict = strict
        self.bad_frames: list[int] = []

    def batches(self, batch_size: int) -> Iterator[FrameBatch]:
        if batch_size < 1:
            raise VfxError(f"batch size must be at least 1, got {batch_size}")
        numbers: list[int] = []
        images: list[np.ndarray] = []
        for number, image in self.frames():
            numbers.append(number)
            images.append(image)
            if len(images) == batch_size:
                yield self._batch(numbers, images)
                numbers, images = [], []
        if images:
            yield self._batch(numbers, images)

    def _batch(self, numbers: list[int], images: list[np.ndarray]) -> FrameBatch:
        indices = np.asarray(numbers, dtype=np.int64)
        timestamps = (indices - self.info.first_frame) / float(self.info.fps)
        return FrameBatch(frames=np.stack(images), indices=indices, timestamps=timestamps)

    def frames(self) -> Iterator[tuple[int, np.ndarray]]:
        decoded = self._decode_sequence() if self.info.is_sequence else self._decode_container()
        expected = self.range.first
        pending_bad: list[int] = []
        last_good: np.ndarray | None = None
        for number, image in decoded:
            if number < expected:
                continue
            if number > self.range.last:
                break
            if image is None:
                continue
            pending_bad.extend(range(expected, number))
            if pending_bad:
                self._mark_bad(pending_bad)
                for bad in pending_bad:
                    yield bad, image if last_good is None else last_good
                pending_bad = []
            yield number, image
            last_good = image
            expected = number + 1
        if expected <= self.range.last:
            if last_good is None:
                raise VfxError(f"{self.info.path}: no frame in {self.range.first}-{self.range.last} could be decoded")
            missing = list(range(expected, self.range.last + 1))
            self._mark_bad(missing)
            for bad in missing:
                yield bad, last_good

    def _mark_bad(self, numbers: list[int]) -> None:
        if self.strict:
            raise VfxError(f"{self.info.path}: frame {numbers[0]} cannot be decoded (damaged input)")
        self.bad_frames.extend(numbers)

    def _decode_sequence(self) -> Iterator[tuple[int, np.ndarray | None]]:
        files = sequence_files(self.info.path)
        for number in range(self.range.first, self.range.last + 1):
            try:
                image = read_image_rgb(files[number])
            except (VfxError, KeyError):
                image = None
            if image is not None and image.shape[:2] != (self.info.height, self.info.width):
                raise VfxError(f"{files[number]}: size {image.shape[1]}x{image.shape[0]} differs from the sequence's first frame")
            yield number, image

    def _decode_container(self) -> Iterator[tuple[int, np.ndarray | None]]:
        # Frames are numbered by decode count, not pts: AVI files with packed B-frames carry
        # decode-order pts. A packet the decoder rejects stands for one lost frame.
        try:
            container = av.open(self.info.path, metadata_errors="ignore")
        except av.FFmpegError as exc:
            raise VfxError(f"{self.info.path}: not a readable video ({exc})") from None
        with container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            number = self.info.first_frame
            for packet in container.demux(stream):
                if number > self.range.last:
                    return
                try:
                    frames = packet.decode()
                except av.FFmpegError as exc:
                    if packet.size:
                        log.debug("undecodable packet at pts %s: %s", packet.pts, exc)
                        yield number, None
                        number += 1
                    continue
                for frame in frames:
                    if number >= self.range.first and (frame.width, frame.height) == (self.info.width, self.info.height):
                        yield number, frame.to_ndarray(format="rgb24")
                    else:
                        yield number, None
                    number += 1
