"""One registry for every capability: which backends exist, what each needs, which one a job gets.

A ``Backend`` declares its capability, the manifest models it loads, whether ``auto`` needs a GPU
for it, its licence, a ``serves`` check (can it do what the config asks?) and a ``build`` that
loads weights. ``plan`` chooses a backend for every capability a config needs without loading
anything (it reads the config, the manifest and the store's files); ``build_step`` loads one.
``auto``, the licence policy and availability are decided here and nowhere else.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vfx.config import PipelineConfig
from vfx.errors import VfxError
from vfx.models.manifest import licence_allows

log = logging.getLogger(__name__)

CAPABILITIES = ("segment", "face_detect", "identity", "rejuvenate", "lipsync", "restyle")


@dataclass(frozen=True)
class Backend:
    capability: str
    name: str
    build: Callable[["BuildContext"], Any]  # loads weights; returns the step (or identity embedder)
    model_kind: str | None = None  # manifest kind it loads one model of (picked by ``choose_model``)
    models: tuple[str, ...] = ()  # manifest models it always loads (embedded weights declared there)
    needs_gpu: bool = False  # ``auto`` picks it only on a GPU; named, it also runs on the CPU
    licence: str = "Apache-2.0"  # of the code and embedded weights; store models carry their own
    commercial_use: bool = True
    serves: Callable[[PipelineConfig], str | None] = lambda config: None  # why it cannot do this job
    rank: int = 100  # ``auto`` tries lower ranks first


@dataclass(frozen=True)
class Choice:
    capability: str
    backend: str
    model: str | None  # manifest model chosen for it, if any
    why: str


@dataclass(frozen=True)
class BuildContext:
    config: PipelineConfig
    choice: Choice
    device: str
    gate: Any = None  # the consent gate, for steps that change a likeness


@dataclass(frozen=True)
class Plan:
    """What a job will run, decided before any weights are loaded."""

    device: str
    choices: tuple[Choice, ...]

    def get(self, capability: str) -> Choice | None:
        return next((c for c in self.choices if c.capability == capability), None)

    def describe(self) -> dict[str, str]:
        return {c.capability: c.backend + (f" ({c.model})" if c.model else "") for c in self.choices}


@dataclass(frozen=True)
class _Request:
    """How a capability reads a config: is it needed, which backend and model were named, the opt-in."""

    needed: Callable[[PipelineConfig], bool]
    backend: Callable[[PipelineConfig], str]
    model: Callable[[PipelineConfig], str | None] = lambda c: None
    allow_noncommercial: Callable[[PipelineConfig], bool] = lambda c: False
    option: str = ""  # the config key that names the backend, for error messages


REQUESTS: dict[str, _Request] = {
    "segment": _Request(lambda c: bool(c.segment.subject), lambda c: c.segment.backend, lambda c: c.segment.model,
                        lambda c: c.segment.allow_noncommercial, "segment.backend"),
    "face_detect": _Request(lambda c: c.face.rejuvenate is not None or c.face.lipsync is not None,
                            lambda c: c.face.detector, allow_noncommercial=lambda c: c.face.allow_noncommercial,
                            option="face.detector"),
    # "auto" identity is the enrolled subjects' backend: the consent gate chooses it from its store.
    "identity": _Request(lambda c: c.consent.identity_backend != "auto" and (c.face.rejuvenate is not None or c.face.lipsync is not None),
                         lambda c: c.consent.identity_backend, allow_noncommercial=lambda c: c.consent.allow_noncommercial,
                         option="consent.identity_backend"),
    "rejuvenate": _Request(lambda c: c.face.rejuvenate is not None, lambda c: c.face.backend,
                           allow_noncommercial=lambda c: c.face.allow_noncommercial, option="face.backend"),
    "lipsync": _Request(lambda c: c.face.lipsync is not None, lambda c: c.face.backend,
                        allow_noncommercial=lambda c: c.face.allow_noncommercial, option="face.backend"),
    "restyle": _Request(lambda c: any((c.restyle.style, c.restyle.style_image, c.restyle.prompt)),
                        lambda c: c.restyle.backend, lambda c: c.restyle.model,
                        lambda c: c.restyle.allow_noncommercial, "restyle.backend"),
}

_BACKENDS: dict[str, dict[str, Backend]] = {capability: {} for capability in CAPABILITIES}
_loaded = False
_loading = threading.RLock()  # re-entrant: importing a capability package registers through this module


def register(backend: Backend) -> Backend:
    if backend.capability not in _BACKENDS:
        raise ValueError(f"unknown capability {backend.capability!r}")
    _BACKENDS[backend.capability][backend.name] = backend
    return backend


def backends(capability: str | None = None) -> list[Backend]:
    """Registered backends (of one capability), in ``auto`` order."""
    _load_builtin()
    chosen = [capability] if capability else list(CAPABILITIES)
    return [b for cap in chosen for b in sorted(_BACKENDS[cap].values(), key=lambda b: (b.rank, b.name))]


def _load_builtin() -> None:
    """Backends register when their capability package is imported; importing them is cheap (no torch).
    Under a lock, and marked loaded only once every import finished: threads that plan at once (stream
    replicas) must never see a half-filled registry."""
    global _loaded
    if _loaded:
        return
    with _loading:
        if not _loaded:
            import vfx.face.backends  # noqa: F401
            import vfx.restyle  # noqa: F401
            import vfx.segment  # noqa: F401
            _loaded = True


# -- availability: the one place it is decided (the licence policy is vfx.models.licence_allows) -------
def _model_for(backend: Backend, config: PipelineConfig, request: _Request) -> tuple[str | None, str | None]:
    """(model, None) when the backend's weights are usable, else (None, why not). Never loads weights."""
    from vfx.models import ModelStore, choose_model

    store = ModelStore()
    allow = request.allow_noncommercial(config)
    for name in backend.models:
        entry = store.manifest.entry(name)
        if not licence_allows(entry.commercial_use, allow):
            return None, f"model {name} is licensed '{entry.licence}'; opt in with --allow-noncommercial"
        if not store.present(name):
            return None, f"model {name} not in the store {store.root} (vfx models fetch {name}, or import)"
    if backend.model_kind is None:
        return (backend.models[0] if backend.models else None), None
    try:
        model, why = choose_model(store, backend.model_kind, request.model(config), allow)
    except VfxError as exc:
        return None, str(exc)
    return model, None if model else why


def _unavailable(backend: Backend, config: PipelineConfig, device: str, request: _Request, auto: bool) -> tuple[str | None, str | None]:
    """(model, None) if ``backend`` can run this job on ``device``, else (None, reason)."""
    reason = backend.serves(config)
    if reason is None and not licence_allows(backend.commercial_use, request.allow_noncommercial(config)):
        reason = f"licensed '{backend.licence}'; opt in with --allow-noncommercial"
    if reason is not None:
        return None, reason
    model, reason = _model_for(backend, config, request)
    if reason is None and auto and backend.needs_gpu and not device.startswith("cuda"):
        return None, f"no GPU (device {device}); name it to run it on the CPU anyway"
    return model, reason


def choose(capability: str, config: PipelineConfig, device: str) -> Choice:
    """The backend ``capability`` runs with for this job: the one named, or ``auto``'s pick, with why."""
    _load_builtin()
    request = REQUESTS[capability]
    named = request.backend(config)
    registered = _BACKENDS[capability]
    if named != "auto":
        if named not in registered:
            raise VfxError(f"unknown {request.option} {named!r}; choose auto, {', '.join(sorted(registered))}")
        model, reason = _unavailable(registered[named], config, device, request, auto=False)
        if reason is not None:
            raise VfxError(f"{capability} backend {named}: {reason}")
        return Choice(capability, named, model, f"{named} requested")
    passed_over = []
    for backend in backends(capability):
        model, reason = _unavailable(backend, config, device, request, auto=True)
        if reason is None:
            why = f"auto on {device}" + (f", {model}" if model else "") + (f"; passed over {'; '.join(passed_over)}" if passed_over else "")
            log.info("%s: %s (%s)", capability, backend.name, why)
            return Choice(capability, backend.name, model, why)
        log.info("%s: not %s (%s)", capability, backend.name, reason)
        passed_over.append(f"{backend.name}: {reason}")
    raise VfxError(f"no {capability} backend can run this job ({'; '.join(passed_over)})")


def plan(config: PipelineConfig, device: str) -> Plan:
    """Choose every capability the config needs. Loads no weights; the gateway calls this to validate."""
    choices = tuple(choose(cap, config, device) for cap in CAPABILITIES if REQUESTS[cap].needed(config))
    if not any(c.capability in ("segment", "restyle", "rejuvenate", "lipsync") for c in choices):
        raise VfxError("nothing to do: give --subject, --style, --style-image, --prompt, --rejuvenate or --lipsync")
    return Plan(device, choices)


def build(choice: Choice, config: PipelineConfig, device: str, gate: Any = None) -> Any:
    """Load the chosen backend's weights. Its ``model_hashes`` name every weight file it loaded."""
    _load_builtin()
    backend = _BACKENDS[choice.capability][choice.backend]
    built = backend.build(BuildContext(config, choice, device, gate))
    if choice.model and not getattr(built, "model_hashes", None):
        built.model_hashes = model_hashes(choice.model)
    return built


def model_hashes(*models: str) -> dict[str, str]:
    """``model/file -> sha256`` of store models, as verified by the store (pinned or recorded at import)."""
    from vfx.models import ModelStore

    store = ModelStore()
    return {f"{name}/{path}": digest for name in models for path, digest in store.hashes(name).items()}


__all__ = ["Backend", "BuildContext", "Choice", "Plan", "CAPABILITIES", "register", "backends", "choose", "plan",
           "build", "licence_allows", "model_hashes"]
