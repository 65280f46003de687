"""Subject prompts: ``person``, ``box:x,y,w,h@FRAME``, ``point:x,y@FRAME``, ``negpoint:x,y@FRAME``.

Several prompts combine with ``+`` (or by repeating ``--subject``). Prompts on different frames
are key frames of the same subject (``box:...@120+point:...@260``): the tracker starts from the
first and takes each later one afresh, e.g. after a cut or when it drifted. ``@FRAME`` defaults
to the first frame of the range.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from vfx.errors import VfxError

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


def parse_subject(texts: str | list[str] | None) -> SubjectSpec:
    if not texts:
        return SubjectSpec("none")
    parts = [p.strip() for t in ([texts] if isinstance(texts, str) else texts) for p in t.split("+") if p.strip()]
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
