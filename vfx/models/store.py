"""The local model store: ``$VFX_MODEL_DIR/<model>/<file>``, every file checked against its sha256.

A file's expected hash is the manifest's pin, or, for entries the manifest cannot pin (weights
whose publisher gives no checksum), the hash recorded in ``<model>/vfx-lock.json`` when the file
was fetched or imported through this store. A file with neither is never loaded. Hashing a
multi-gigabyte checkpoint on every load would be slow, so a verification stamp (size, mtime,
hash) lets loads skip re-hashing an untouched file; ``vfx models verify`` always re-hashes.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from vfx.errors import VfxError
from vfx.hashing import sha256_file
from vfx.models.manifest import Manifest, ModelEntry, ModelFile, licence_allows, load_manifest

log = logging.getLogger(__name__)

STORE_ENV = "VFX_MODEL_DIR"
LOCK = "vfx-lock.json"  # hashes recorded at fetch/import for files the manifest does not pin
STAMP = ".vfx-verified.json"  # (size, mtime_ns, sha256) of files already hashed
CHUNK = 1 << 22


def default_store_dir() -> Path:
    return Path(os.environ.get(STORE_ENV) or Path.home() / ".vfx" / "models").expanduser()


@dataclass(frozen=True)
class Status:
    name: str
    state: str  # present | missing | corrupt | unverified
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.state == "present"


class ModelStore:
    def __init__(self, root: str | Path | None = None, manifest: Manifest | None = None):
        self.root = Path(root) if root is not None else default_store_dir()
        self.manifest = manifest if manifest is not None else load_manifest()

    # -- queries ---------------------------------------------------------------------------
    def folder(self, name: str) -> Path:
        return self.root / self.manifest.entry(name).name

    def status(self, name: str, rehash: bool = False) -> Status:
        entry = self.manifest.entry(name)
        if entry.package:  # embedded in an installed PyPI package, not in the store
            from vfx.models.embedded import embedded_problem

            problem = embedded_problem(entry)
            return Status(name, "corrupt" if problem else "present", problem or f"embedded in {entry.package}")
        folder = self.folder(name)
        missing = [f.path for f in entry.files if not (folder / f.path).is_file()]
        if len(missing) == len(entry.files):
            return Status(name, "missing", f"vfx models fetch {name}, or vfx models import {name} PATH")
        if missing:
            return Status(name, "missing", f"{len(missing)} of {len(entry.files)} files absent, e.g. {missing[0]}; vfx models fetch {name}")
        lock, stamp = self._read(folder / LOCK), self._read(folder / STAMP)
        for file in entry.files:
            expected = file.sha256 or lock.get(file.path)
            if expected is None:
                return Status(name, "unverified", f"{file.path} has no pinned or recorded sha256; vfx models import {name} PATH")
            problem = self._check_file(folder / file.path, file, expected, stamp, rehash)
            if problem:
                return Status(name, "corrupt", f"{problem}; vfx models fetch {name} (or import) replaces it")
        self._write(folder / STAMP, stamp)
        return Status(name, "present", "pinned" if all(f.sha256 for f in entry.files) else "hash recorded at import")

    def require(self, name: str) -> Path:
        """The model's folder, after checking every file; otherwise one line saying how to fix it."""
        status = self.status(name)
        if status.state == "missing":
            raise VfxError(f"model {name} is not in the store {self.root} ({status.detail})")
        if not status.ok:
            raise VfxError(f"model {name} is {status.state}: {status.detail}")
        return self.folder(name)

    def hashes(self, name: str) -> dict[str, str]:
        """``file -> sha256`` of a verified model: the pinned hash, or the one recorded at fetch/import."""
        folder = self.require(name)
        lock = self._read(folder / LOCK)
        return {f.path: f.sha256 or lock[f.path] for f in self.manifest.entry(name).files}

    def present(self, name: str) -> bool:
        entry = self.manifest.entry(name)
        if entry.package:  # embedded: installed with its package (hashes are checked when loaded)
            from vfx.models.embedded import embedded_path

            try:
                return all(embedded_path(entry, f).is_file() for f in entry.files)
            except VfxError:
                return False
        return all((self.folder(name) / f.path).is_file() for f in entry.files)

    # -- changes ---------------------------------------------------------------------------
    def fetch(self, name: str) -> Path:
        """Download every file that is not already present and intact, verifying as it streams."""
        entry = self.manifest.entry(name)
        for file in entry.files:
            if file.url is None:
                raise VfxError(f"model {name}: {file.path} has no download URL; get it from {entry.source} and use vfx models import {name} PATH")
        for file in entry.files:
            target = self.folder(name) / file.path
            if target.is_file() and self._intact(entry, file):
                continue
            log.info("fetching %s", file.url)
            try:
                with urllib.request.urlopen(file.url, timeout=60) as response:  # noqa: S310 (manifest URLs only)
                    self._install(entry, file, response)
            except OSError as exc:
                raise VfxError(f"model {name}: cannot download {file.url} ({exc})") from None
        return self.require(name)

    def import_from(self, name: str, source: str | Path) -> Path:
        """Copy a model in from a file (one-file models) or a folder laid out like the model's files."""
        entry = self.manifest.entry(name)
        source = Path(source).expanduser()
        if not source.exists():
            raise VfxError(f"{source}: no such file or folder")
        if source.is_file():
            if len(entry.files) != 1:
                raise VfxError(f"model {name} has {len(entry.files)} files; import a folder that holds {entry.files[0].path} and the rest")
            sources = {entry.files[0].path: source}
        else:
            sources = {f.path: source / f.path for f in entry.files}
            absent = [p for p, s in sources.items() if not s.is_file()]
            if absent:
                raise VfxError(f"{source}: {absent[0]} is missing ({len(absent)} of {len(entry.files)} files of {name})")
        for file in entry.files:
            with open(sources[file.path], "rb") as f:
                self._install(entry, file, f)
        return self.require(name)

    # -- pieces ----------------------------------------------------------------------------
    def _install(self, entry: ModelEntry, file: ModelFile, stream) -> None:
        """Stream into a temporary file beside the target, check size and hash, then rename."""
        target = self.folder(entry.name) / file.path
        target.parent.mkdir(parents=True, exist_ok=True)
        digest, size = hashlib.sha256(), 0
        fd, tmp = tempfile.mkstemp(prefix=".part-", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                while block := stream.read(CHUNK):
                    digest.update(block)
                    size += len(block)
                    out.write(block)
            actual = digest.hexdigest()
            if file.size is not None and size != file.size:
                raise VfxError(f"model {entry.name}: {file.path} is {size} bytes, expected {file.size}; refused")
            if file.sha256 is not None and actual != file.sha256:
                raise VfxError(f"model {entry.name}: {file.path} sha256 {actual[:12]}... does not match the manifest's {file.sha256[:12]}...; refused")
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        folder = self.folder(entry.name)
        if file.sha256 is None:
            lock = self._read(folder / LOCK)
            lock[file.path] = actual
            self._write(folder / LOCK, lock)
            log.warning("model %s: %s is not pinned in the manifest; recorded sha256 %s", entry.name, file.path, actual)
        stamp = self._read(folder / STAMP)
        stat = target.stat()
        stamp[file.path] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": actual}
        self._write(folder / STAMP, stamp)

    def _intact(self, entry: ModelEntry, file: ModelFile) -> bool:
        folder = self.folder(entry.name)
        expected = file.sha256 or self._read(folder / LOCK).get(file.path)
        return expected is not None and not self._check_file(folder / file.path, file, expected, {}, True)

    @staticmethod
    def _check_file(path: Path, file: ModelFile, expected: str, stamp: dict, rehash: bool) -> str | None:
        stat = path.stat()
        if file.size is not None and stat.st_size != file.size:
            return f"{file.path} is {stat.st_size} bytes, expected {file.size}"
        seen = stamp.get(file.path)
        if not rehash and seen and seen["size"] == stat.st_size and seen["mtime_ns"] == stat.st_mtime_ns:
            actual = seen["sha256"]
        else:
            actual = sha256_file(path)
            stamp[file.path] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": actual}
        if actual != expected:
            return f"{file.path} sha256 mismatch (file corrupt or replaced)"
        return None

    @staticmethod
    def _read(path: Path) -> dict:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return {}

    @staticmethod
    def _write(path: Path, data: dict) -> None:
        if not path.parent.is_dir():
            return
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, path)


def choose_model(store: ModelStore, kind: str, requested: str | None, allow_noncommercial: bool) -> tuple[str | None, str]:
    """The model to use and why: the requested one, else the first present entry of ``kind``
    in manifest order whose licence allows commercial use (or any licence when opted in)."""
    if requested is not None:
        entry = store.manifest.entry(requested)
        if entry.kind != kind:
            raise VfxError(f"model {requested} is a {entry.kind} model, not {kind}")
        if not store.present(requested):
            return None, f"model {requested} not in the store (vfx models fetch {requested})"
        return requested, f"model {requested} requested"
    candidates = store.manifest.of_kind(kind)
    skipped = []
    for entry in candidates:
        if not store.present(entry.name):
            continue
        if not licence_allows(entry.commercial_use, allow_noncommercial):
            skipped.append(entry.name)
            continue
        return entry.name, f"model {entry.name} present ({entry.licence})"
    if skipped:
        return None, f"{', '.join(skipped)} present but licensed for non-commercial use only (opt in with allow_noncommercial)"
    first = candidates[0].name if candidates else kind
    return None, f"no {kind} model in the store {store.root} (vfx models fetch {first})"
