"""Before/after pictures of a finished job, decoded from the files actually written."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from vfx.contact import save_contact_sheet
from vfx.matte import matte_preview
from vfx.video import FrameRange, FrameReader, probe


def _frames_at(path: str, numbers: list[int], range_first: int) -> dict[int, np.ndarray]:
    """Frames of a written file by source frame number (a container starts at the range's first)."""
    info = probe(path)
    offset = 0 if info.is_sequence else range_first
    wanted = {n - offset for n in numbers}
    reader = FrameReader(info, FrameRange(info.first_frame, min(info.last_frame, max(wanted))))
    return {number + offset: image for number, image in reader.frames() if number in wanted}


def write_before_after(source: str, output: str, frame_range: FrameRange, sheet: str | Path,
                       matte: str | None = None, rows: int = 4) -> Path:
    """One row per sampled frame: the source, the matte over it (if any), the result."""
    numbers = sorted({int(round(x)) for x in np.linspace(frame_range.first, frame_range.last, rows)})
    before = _frames_at(source, numbers, 0)
    after = _frames_at(output, numbers, frame_range.first)
    mattes = _frames_at(matte, numbers, frame_range.first) if matte else {}
    table = []
    for n in numbers:
        row = [(f"before #{n}", before[n])]
        if n in mattes:
            row.append((f"matte #{n}", matte_preview(before[n], mattes[n][..., 0].astype(np.float32) / 255.0)))
        row.append((f"after #{n}", after[n]))
        table.append(row)
    return save_contact_sheet(sheet, table)
