"""Clips the page works on: uploads (content-addressed, like job uploads) and files under the
input roots; and a frame cache so the player can jump to any frame number at once.

A container is decoded front to back (AVI seeking is unreliable and frame numbers are decode
counts, see vfx/video/reader.py), so the first look at a clip starts one background pass that
writes every frame as a JPEG; a request for a frame waits until the pass reaches it.
"""
from __future__ import annotations

import functools
import hashlib
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from vfx.errors import VfxError
from vfx.video import FrameReader, probe
from vfx.video.probe import VideoInfo

VIDEO_SUFFIXES = {".avi", ".mov", ".mp4", ".m4v", ".mkv", ".webm", ".mxf"}
FRAME_JPEG_QUALITY = 92
WAIT_FOR_FRAME_S = 60.0


def clip_id_of(path: Path) -> str:
    stat = path.stat()
    return hashlib.sha256(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:32]


def clips_under(roots: list[Path], limit: int = 500) -> list[Path]:
    found: list[Path] = []
    for root in roots:
        if root.is_dir():
            found += sorted(p for p in root.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
    return found[:limit]


class FrameCache:
    """JPEG frames of videos in ``folder/<clip id>/``, filled by one decoding pass per video."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.passes: dict[str, threading.Thread] = {}
        self.errors: dict[str, str] = {}
        self.lock = threading.Lock()

    def frame_jpeg(self, path: Path, number: int, info: VideoInfo) -> Path:
        if not info.first_frame <= number <= info.last_frame:
            raise VfxError(f"frame {number} is outside the clip ({info.first_frame}-{info.last_frame})")
        clip = clip_id_of(path)
        target = self._file(clip, number)
        deadline = time.monotonic() + WAIT_FOR_FRAME_S
        while not target.is_file():
            self._ensure_pass(clip, path, info)
            if clip in self.errors:
                raise VfxError(self.errors[clip])
            if time.monotonic() > deadline:
                raise VfxError(f"frame {number} was not decoded in time")
            time.sleep(0.05)
        return target

    def frame_rgb(self, path: Path, number: int, info: VideoInfo) -> np.ndarray:
        bgr = cv2.imread(str(self.frame_jpeg(path, number, info)), cv2.IMREAD_COLOR)
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def _file(self, clip: str, number: int) -> Path:
        return self.folder / clip / f"{number:07d}.jpg"

    def _ensure_pass(self, clip: str, path: Path, info: VideoInfo) -> None:
        with self.lock:
            running = self.passes.get(clip)
            if running is None or (not running.is_alive() and clip not in self.errors and not self._complete(clip, info)):
                running = threading.Thread(target=self._decode_all, args=(clip, path, info), daemon=True,
                                           name=f"frames-{clip[:8]}")
                self.passes[clip] = running
                running.start()

    def _complete(self, clip: str, info: VideoInfo) -> bool:
        return self._file(clip, info.last_frame).is_file()

    def _decode_all(self, clip: str, path: Path, info: VideoInfo) -> None:
        (self.folder / clip).mkdir(parents=True, exist_ok=True)
        try:
            for number, rgb in FrameReader(info).frames():
                target = self._file(clip, number)
                if target.is_file():
                    continue
                ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                                        [cv2.IMWRITE_JPEG_QUALITY, FRAME_JPEG_QUALITY])
                if ok:
                    tmp = target.with_suffix(".part")
                    tmp.write_bytes(data.tobytes())
                    tmp.replace(target)
        except VfxError as exc:
            self.errors[clip] = str(exc)
        except Exception as exc:  # a decoder crash must end the waiters' wait with a reason
            self.errors[clip] = f"{path.name}: decoding stopped ({type(exc).__name__})"


@functools.lru_cache(maxsize=256)
def _probe_once(path: str, size: int, mtime_ns: int) -> VideoInfo:
    return probe(path)


def video_info(path: Path) -> VideoInfo:
    """probe() counts packets; the player asks for the same clip's info on every frame, so remember it."""
    stat = path.stat()
    return _probe_once(str(path), stat.st_size, stat.st_mtime_ns)
