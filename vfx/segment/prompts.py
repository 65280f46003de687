"""Subject prompts: ``person``, ``box:x,y,w,h@FRAME``, ``point:x,y@FRAME``, ``negpoint:x,y@FRAME``.

Prompts of one subject join with ``+``; each ``--subject`` is a subject of its own, named
``NAME=...`` or s1, s2, ... in order (one matte per subject). Prompts on different frames
are key frames of the same subject (``box:...@120+point:...@260``): the tracker starts from the
first and takes each later one afresh, e.g. after a cut or when it drifted. ``@FRAME`` defaults
to the first frame of the range.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from vfx.errors import VfxError

_NAMED = re.compile(r"^([A-Za-z][\w-]*)=(.+)$")
_PROMPT = re.compile(r"^(box|point|negpoint):([-\d.,\s]+?)(?:@(\d+))?$")


@dataclass(frozen=True)
class SubjectPrompt:
    """Where the subject is on its key frame. Coordinates are pixels of the source frame."""

    key_frame: int | None
    box: tuple[float, float, float, float] | None = None  # x, y, w, h
    points: tuple[tuple[float, float], ...] = field(default_factory=tuple)
    negative_points: tuple[tuple[float, float], ...] = field(default_factory=tuple)

    def check_inside(self, width: int, height: int, first: int, last: int) -> None:
        if self.key_frame is not None and not first <= self.key_frame <= last:
            raise VfxError(f"--subject: key frame {self.key_frame} is outside the frames processed ({first}-{last})")
        if self.box is not None:
            x, y, w, h = self.box
            if w <= 0 or h <= 0:
                raise VfxError(f"--subject box {self.box}: width and height must be positive")
            if x < 0 or y < 0 or x + w > width or y + h > height:
                raise VfxError(f"--subject box {x:g},{y:g},{w:g},{h:g} is outside the {width}x{height} frame")
        for px, py in self.points + self.negative_points:
            if not (0 <= px < width and 0 <= py < height):
                raise VfxError(f"--subject point {px:g},{py:g} is outside the {width}x{height} frame")


@dataclass(frozen=True)
class SubjectSpec:
    kind: str  # "person" | "prompt" | "none"
    prompt: SubjectPrompt | None = None  # the first key frame's
    prompts: tuple[SubjectPrompt, ...] = ()  # every key frame's, in frame order (first frame's first)
    id: str = "s1"
    text: str = ""  # the --subject text it came from (without its name)
    subjects: tuple[SubjectSpec, ...] = ()  # several subjects: each of them; kind is "prompt" if any is prompted


def parse_subjects(texts: str | list[str] | None) -> list[SubjectSpec]:
    """Each ``--subject`` text is one subject (``NAME=`` optional); ``+`` joins the prompts of one."""
    subjects = []
    for number, text in enumerate([texts] if isinstance(texts, str) else list(texts or []), start=1):
        named = _NAMED.match(text.strip())
        name, body = (named.group(1), named.group(2)) if named else (f"s{number}", text.strip())
        spec = _parse_one(body)
        subjects.append(SubjectSpec(spec.kind, spec.prompt, spec.prompts, name, body))
    ids = [s.id for s in subjects]
    if len(set(ids)) != len(ids):
        raise VfxError(f"--subject: subject names must differ, got {', '.join(ids)}")
    return subjects


def parse_subject(texts: str | list[str] | None) -> SubjectSpec:
    """One subject as it is, several as one spec listing them (``subjects``)."""
    subjects = parse_subjects(texts)
    if not subjects:
        return SubjectSpec("none")
    if len(subjects) == 1:
        return subjects[0]
    kind = "prompt" if any(s.kind == "prompt" for s in subjects) else "person"
    return SubjectSpec(kind, subjects=tuple(subjects))


def _parse_one(text: str) -> SubjectSpec:
    parts = [p.strip() for p in text.split("+") if p.strip()]
    if parts == ["person"]:
        return SubjectSpec("person")
    if "person" in parts:
        raise VfxError("--subject person cannot be combined with box or point prompts")
    by_frame: dict[int | None, dict] = {}
    for part in parts:
        match = _PROMPT.match(part)
        if match is None:
            raise VfxError(f"--subject {part!r}: expected person, box:x,y,w,h@FRAME, point:x,y@FRAME or negpoint:x,y@FRAME")
        kind, numbers_text, frame = match.groups()
        try:
            numbers = tuple(float(n) for n in numbers_text.split(","))
        except ValueError:
            raise VfxError(f"--subject {part!r}: coordinates must be numbers") from None
        key = by_frame.setdefault(int(frame) if frame is not None else None, {"box": None, "point": [], "negpoint": []})
        if kind == "box":
            if len(numbers) != 4:
                raise VfxError(f"--subject {part!r}: a box needs x,y,w,h")
            if key["box"] is not None:
                raise VfxError("--subject: give one box per subject and key frame")
            key["box"] = numbers
        else:
            if len(numbers) != 2:
                raise VfxError(f"--subject {part!r}: a point needs x,y")
            key[kind].append(numbers)
    prompts = []
    for frame in sorted(by_frame, key=lambda f: -1 if f is None else f):
        key = by_frame[frame]
        if key["box"] is None and not key["point"]:
            where = f"key frame {frame}" if frame is not None else "the first frame"
            raise VfxError(f"--subject: give a box or at least one positive point on {where}")
        prompts.append(SubjectPrompt(frame, key["box"], tuple(key["point"]), tuple(key["negpoint"])))
    return SubjectSpec("prompt", prompts[0], tuple(prompts))
