"""Mattes a tracking pass stored, replayed as the segment step of a render pass.

A prompted tracker (GrabCut + flow, SAM 2) must walk a shot in order, so a shot job tracks it
once and writes every frame's matte to a ``MatteStore`` on shared storage; render chunks then
run in parallel with ``StoredMatte`` instead of the tracker, each reading only its own frames.

Format: one ``NNNNNNNN.npz`` (zlib-compressed float32) per frame. The compositor reads the
feathered float matte itself, so anything 8-bit (PNG, an FFV1 gray video) would change output
pixels; float32 keeps the replay bit-exact. One file per frame, written to a temporary name,
fsynced and renamed, means a crash loses at most the frame being written, any chunk on any node
reads its frames without decoding others, and "done" is visible as ``complete.json``.
"""
from __future__ import annotations

import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from vfx.config import PipelineConfig
from vfx.errors import VfxError
from vfx.frames import FrameBatch, ShotState, Step
from vfx.registry import Backend, BuildContext, register

COMPLETE = "complete.json"
CHECKPOINT = "checkpoint.pkl"


def _write_atomic(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class MatteStore:
    """A folder of per-frame float32 mattes, addressed by frame number, plus the tracker's checkpoint."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path_of(self, number: int) -> Path:
        return self.root / f"{number:08d}.npz"

    def put(self, number: int, matte: np.ndarray) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        _write_atomic(self.path_of(number), lambda f: np.savez_compressed(f, matte=np.asarray(matte, np.float32)))

    def get(self, number: int) -> np.ndarray:
        try:
            with np.load(self.path_of(number)) as data:
                return data["matte"]
        except FileNotFoundError:
            raise VfxError(f"stored mattes {self.root}: no matte for frame {number}; the tracking pass has not "
                           "reached it") from None
        except (OSError, ValueError, KeyError) as exc:
            raise VfxError(f"stored mattes {self.root}: frame {number} is unreadable ({exc})") from None

    def has(self, number: int) -> bool:
        return self.path_of(number).is_file()

    def sync(self) -> None:
        """Make the renames durable: fsync the folder (an NFS server commits on it)."""
        fd = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # -- the tracking pass's progress ---------------------------------------------------------
    def save_checkpoint(self, frame: int, state: Any) -> None:
        """The tracker's state after ``frame``; mattes up to ``frame`` must already be stored."""
        payload = pickle.dumps({"frame": frame, "state": state})
        _write_atomic(self.root / CHECKPOINT, lambda f: f.write(payload))

    def load_checkpoint(self) -> tuple[int, Any] | None:
        path = self.root / CHECKPOINT
        if not path.is_file():
            return None
        try:
            saved = pickle.loads(path.read_bytes())  # written by this service into its own state dir
        except (pickle.UnpicklingError, EOFError, AttributeError, ImportError):
            return None  # from an older tracker: track again from the start
        return saved["frame"], saved["state"]

    def mark_complete(self, first: int, last: int, tracker: str, model_hashes: dict[str, str]) -> None:
        info = {"first": first, "last": last, "tracker": tracker, "model_hashes": model_hashes}
        _write_atomic(self.root / COMPLETE, lambda f: f.write(json.dumps(info).encode()))
        (self.root / CHECKPOINT).unlink(missing_ok=True)

    def completed(self) -> dict[str, Any] | None:
        path = self.root / COMPLETE
        return json.loads(path.read_text()) if path.is_file() else None


class StoredMatte(Step):
    """The segment step of a render pass: each frame's matte as the tracking pass stored it."""

    name = "segment"

    def __init__(self, store: MatteStore):
        self.store = store
        done = store.completed()
        if done is None:
            raise VfxError(f"stored mattes {store.root}: the tracking pass has not finished")
        self.model_hashes = dict(done["model_hashes"])  # the tracker's weights shaped these mattes

    def __call__(self, batch: FrameBatch, shot: ShotState) -> FrameBatch:
        mattes = [self.store.get(int(n)) for n in batch.indices]
        height, width = batch.frames.shape[1:3]
        if any(m.shape != (height, width) for m in mattes):
            raise VfxError(f"stored mattes {self.store.root}: mattes are not {width}x{height}")
        batch.matte = np.stack(mattes)
        return batch


def _serves(config: PipelineConfig) -> str | None:
    return None if config.segment.stored_mattes else "needs segment.stored_mattes (a tracking pass's folder)"


def _build(ctx: BuildContext) -> Step:
    return StoredMatte(MatteStore(ctx.config.segment.stored_mattes))


# rank 0: when a job names stored mattes, auto replays them rather than tracking again.
register(Backend("segment", "stored", _build, licence="Apache-2.0 (replays a tracking pass)", serves=_serves, rank=0))
