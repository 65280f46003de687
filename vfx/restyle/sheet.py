"""``vfx styles [CLIP]``: every built-in neural style on a frame of the user's own clip, in one picture."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import cv2
import numpy as np
import typer

from vfx.config import RestyleConfig
from vfx.contact import save_contact_sheet
from vfx.errors import VfxError
from vfx.video import FrameRange, FrameReader, probe

COLUMNS = 6


def style_tiles(frame: np.ndarray, size: int = 512) -> list[tuple[str, np.ndarray]]:
    """The frame, then each of the 26 styles on it, labelled with the number and name ``--style`` takes."""
    from vfx.restyle.neural import NEURAL_STYLES, STYLE_COUNT, PaintState, build_neural  # onnxruntime: only when used

    step = build_neural(RestyleConfig(style="0", neural_size=size), "cpu")
    w, h = step.work_size(frame.shape[1], frame.shape[0])
    small = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)[None]
    names = {index: name for name, index in NEURAL_STYLES.items()}
    tiles = [("your frame", frame)]
    for index in range(STYLE_COUNT):
        step.weights = np.eye(STYLE_COUNT, dtype=np.float32)[index]
        painted = step.full_size(step.paint(small, PaintState())[0], frame)
        tiles.append((f"{index} {names.get(index, '')}".strip(), step.finish_frame(painted, frame, 1.0, 1)))
    return tiles


def styles(
    clip: Optional[str] = typer.Argument(None, help="Video or image sequence to show the styles on (default: the sample vtest.avi)."),
    output: str = typer.Option("styles.png", "-o", "--output", help="Contact sheet to write (PNG or JPG)."),
    frame: Optional[int] = typer.Option(None, "--frame", help="Frame number to use (default: the middle of the clip)."),
    size: int = typer.Option(512, "--size", min=128, max=2048, help="Longest side the network paints at (stroke scale), as restyle.neural_size."),
) -> None:
    """Write a contact sheet of every built-in neural style (pass its number or name to --style)."""
    if clip is None:
        from vfx.cli_run import find_samples

        clip = str(find_samples(None) / "vtest.avi")
    info = probe(clip)
    number = frame if frame is not None else (info.first_frame + info.last_frame) // 2
    if not info.first_frame <= number <= info.last_frame:
        raise VfxError(f"--frame {number}: {clip} has frames {info.first_frame}-{info.last_frame}")
    image = next((f for _, f in FrameReader(info, FrameRange(number, number)).frames()), None)
    if image is None:
        raise VfxError(f"{clip}: frame {number} could not be decoded")
    tiles = style_tiles(image, size)
    rows = [tiles[i:i + COLUMNS] for i in range(0, len(tiles), COLUMNS)]
    path = save_contact_sheet(Path(output), rows, width=1800)
    typer.echo(f"styles: {path} ({len(tiles) - 1} styles on frame {number} of {Path(clip).name}; use --style N or a name, blends like 3:0.5,12:0.5)")


def register(app: typer.Typer) -> None:
    app.command("styles")(styles)
