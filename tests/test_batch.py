"""vfx batch: a shot list (OpenTimelineIO timeline, CMX 3600 EDL, CSV) run shot by shot, with a report."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import opentimelineio as otio
import pytest

from conftest import SAMPLES

MEGAMIND, VTEST = SAMPLES / "Megamind.avi", SAMPLES / "vtest.avi"


def vfx(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vfx.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=900)


def frame_count(path: str | Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def clip(name: str, source: Path, first: int, count: int, rate: float, **vfx_meta) -> otio.schema.Clip:
    return otio.schema.Clip(name=name, media_reference=otio.schema.ExternalReference(target_url=str(source)),
                            source_range=otio.opentime.TimeRange(otio.opentime.RationalTime(first, rate),
                                                                 otio.opentime.RationalTime(count, rate)),
                            metadata={"vfx": vfx_meta} if vfx_meta else {})


def test_a_timeline_of_three_shots(tmp_path):
    timeline = otio.schema.Timeline(name="reel 1")
    track = otio.schema.Track(name="V1")
    timeline.tracks.append(track)
    track.append(clip("roxanne", MEGAMIND, 160, 8, 23.976, subject="box:80,0,330,528@162", style="golden_hour"))
    track.append(clip("car park", VTEST, 100, 6, 10, style="night"))
    track.append(clip("hal", MEGAMIND, 140, 5, 23.976, style="golden_hour"))
    otio.adapters.write_to_file(timeline, str(tmp_path / "reel.otio"))
    done = vfx("batch", str(tmp_path / "reel.otio"), "--out-dir", str(tmp_path / "out"), "-q", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert [s["status"] for s in report["shots"]] == ["done"] * 3
    assert [s["frames"] for s in report["shots"]] == [8, 6, 5] and report["frames"] == 19
    for shot, expected in zip(report["shots"], (8, 6, 5)):
        assert frame_count(shot["output"]) == expected
        assert Path(shot["provenance"]).is_file()
    assert "3 of 3 shots done, 19 frames" in done.stdout


def test_an_edl_through_the_otio_adapter(tmp_path):
    (tmp_path / "Megamind.avi").symlink_to(MEGAMIND)
    (tmp_path / "cut.edl").write_text(
        "TITLE: cut\nFCM: NON-DROP FRAME\n\n"
        "001  AX       V     C        00:00:06:16 00:00:06:22 01:00:00:00 01:00:00:06\n"
        "* FROM CLIP NAME: Megamind.avi\n")
    done = vfx("batch", str(tmp_path / "cut.edl"), "--out-dir", str(tmp_path / "out"), "--style", "night", "-q", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (shot,) = json.loads((tmp_path / "out" / "report.json").read_text())["shots"]
    assert shot["frames"] == 6 and frame_count(shot["output"]) == 6  # 6 s 16 f at 24 fps: frames 160-165


def test_a_failing_shot_is_reported_and_the_others_still_run(tmp_path):
    (tmp_path / "shots.csv").write_text(
        "input,frames,subject,style,output\n"
        f"{VTEST},0-3,,golden_hour,{tmp_path / 'a.mp4'}\n"
        f"{tmp_path / 'missing.mov'},0-3,,night,\n"
        f"{MEGAMIND},160-163,\"box:80,0,330,528@160\",night,\n")
    ran = vfx("batch", str(tmp_path / "shots.csv"), "--out-dir", str(tmp_path / "out"), "-q", cwd=tmp_path)
    assert ran.returncode == 1
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert [s["status"] for s in report["shots"]] == ["done", "failed", "done"]
    assert "missing.mov" in report["shots"][1]["error"] and frame_count(tmp_path / "a.mp4") == 4
    assert "2 of 3 shots done" in ran.stdout


@pytest.mark.parametrize("text, message", [
    ("input,colour\nx.mov,red\n", "unknown colour"),
    ("input,frames\n,0-3\n", ":2: input is empty"),
    ("input,output\na.mov,o.mp4\nb.mov,o.mp4\n", "two shots write the same output"),
])
def test_bad_shot_lists_are_one_line_errors(tmp_path, text, message):
    (tmp_path / "shots.csv").write_text(text)
    ran = vfx("batch", str(tmp_path / "shots.csv"), cwd=tmp_path)
    assert ran.returncode == 2 and message in ran.stderr and len(ran.stderr.strip().splitlines()) == 1
