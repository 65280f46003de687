"""Make a file survive a power cut before a record says it exists.

A rename is atomic but not durable: after a crash the directory entry (or the file's blocks) can
be missing although the database already says "done". So before a chunk or a job is marked done,
its files and their directory are fsynced; and a "done" mark is only trusted after the file is
found and decoded to the frame count it must have.
"""
from __future__ import annotations

from pathlib import Path

import av

from vfx.durable import fsync_dir, fsync_file, write_durably  # noqa: F401 (re-exported for the service)


def make_durable(*paths: Path) -> None:
    """fsync each file, then each distinct parent directory (which holds the renamed entry)."""
    for path in paths:
        fsync_file(path)
    for directory in {Path(p).parent for p in paths}:
        fsync_dir(directory)


def decodes_to(path: Path, frames: int) -> bool:
    """True when ``path`` exists and its first video stream decodes to exactly ``frames`` frames."""
    if not path.is_file():
        return False
    try:
        with av.open(str(path)) as container:
            return sum(1 for _ in container.decode(video=0)) == frames
    except (av.FFmpegError, IndexError, ValueError):
        return False
