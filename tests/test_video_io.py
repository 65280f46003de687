"""Video in and out: frame counts, rates, audio, sequences, ranges, atomic writes."""
from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from conftest import SAMPLES
from video_helpers import audio_duration, read_all, top_level_boxes, write_sequence
from vfx.config import PipelineConfig, with_overrides
from vfx.errors import VfxError
from vfx.job import JobSpec, run_job
from vfx.video import FrameRange, FrameReader, parse_frame_range, probe

GOLDEN = with_overrides(PipelineConfig(), {"restyle.style": "golden_hour"})


def test_probe_sample_footage():
    vtest = probe(SAMPLES / "vtest.avi")
    assert (vtest.width, vtest.height, vtest.fps, vtest.frame_count) == (768, 576, Fraction(10), 795)
    assert vtest.audio_codec is None
    mega = probe(SAMPLES / "Megamind.avi")
    assert (mega.width, mega.height, mega.frame_count, mega.audio_codec) == (720, 528, 270, "ac3")
    assert abs(float(mega.fps) - 23.976) < 0.001


def test_frame_range_parsing():
    info = probe(SAMPLES / "vtest.avi")
    assert parse_frame_range(None, info) == FrameRange(0, 794)
    assert parse_frame_range("10-19", info) == FrameRange(10, 19)
    assert parse_frame_range("790-", info) == FrameRange(790, 794)
    assert parse_frame_range("5", info) == FrameRange(5, 5)
    for bad in ("20-10", "0-795", "a-b", "-5"):
        with pytest.raises(VfxError):
            parse_frame_range(bad, info)


def test_whole_clip_keeps_frames_fps_and_audio_by_stream_copy(tmp_path):
    out = tmp_path / "mega.mp4"
    result = run_job(JobSpec(str(SAMPLES / "Megamind.avi"), str(out), GOLDEN))
    assert result.frames == 270
    with av.open(str(out)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert video.codec_context.name == "h264" and video.codec_context.pix_fmt == "yuv420p"
        assert video.average_rate == Fraction(2997, 125)
        assert audio.codec_context.name == "ac3"  # copied, not re-encoded
    assert len(read_all(out)[0]) == 270
    source_audio = audio_duration(SAMPLES / "Megamind.avi")
    assert abs(audio_duration(out) - source_audio) < 0.05
    boxes = top_level_boxes(out)
    assert boxes.index("moov") < boxes.index("mdat"), f"faststart: moov must precede mdat, got {boxes}"


def test_frame_range_trims_video_and_audio(tmp_path):
    out = tmp_path / "range.mp4"
    run_job(JobSpec(str(SAMPLES / "Megamind.avi"), str(out), GOLDEN, frames="24-119"))
    numbers, frames = read_all(out)
    assert len(numbers) == 96
    expected = 96 / (2997 / 125)
    with av.open(str(out)) as container:
        assert container.streams.audio[0].codec_context.name == "aac"  # trimmed, so re-encoded
    assert abs(audio_duration(out) - expected) < 0.1
    # the first output frame is source frame 24, restyled: compare structure, not colour
    source = dict(FrameReader(probe(SAMPLES / "Megamind.avi"), FrameRange(24, 24)).frames())[24]
    corr = np.corrcoef(source.mean(axis=2).ravel(), frames[0].mean(axis=2).ravel())[0, 1]
    assert corr > 0.9


def test_image_sequence_in_and_out_with_vfx_frame_numbers(tmp_path):
    _, frames = read_all_frames(SAMPLES / "vtest.avi", 12)
    plates = tmp_path / "plates"
    plates.mkdir()
    pattern = write_sequence(plates, frames, first=1001)
    info = probe(pattern)
    assert (info.first_frame, info.last_frame, info.is_sequence) == (1001, 1012, True)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    result = run_job(JobSpec(pattern, str(out_dir / "graded.%04d.png"), GOLDEN, frames="1003-1010"))
    assert result.frames == 8
    assert sorted(p.name for p in out_dir.iterdir()) == [f"graded.{n:04d}.png" for n in range(1003, 1011)]


def test_exr_sequence_round_trip_with_matte_in_alpha(tmp_path):
    import cv2

    _, frames = read_all_frames(SAMPLES / "vtest.avi", 4)
    pattern = write_sequence(tmp_path, frames, first=1, pattern="plate.%04d.exr")
    config = with_overrides(GOLDEN, {"segment.subject": ["box:300,100,200,250@1"]})
    run_job(JobSpec(pattern, str(tmp_path / "comp.%04d.exr"), config))
    exr = cv2.imread(str(tmp_path / "comp.0002.exr"), cv2.IMREAD_UNCHANGED)
    assert exr.dtype == np.float32 and exr.shape == (576, 768, 4)
    assert exr[..., 3].max() == 1.0 and exr[..., 3].min() == 0.0


def test_output_appears_only_when_complete(tmp_path):
    out = tmp_path / "never.mp4"
    config = with_overrides(GOLDEN, {"segment.subject": ["person"]})

    def cancel_after_first_batch(state={"n": 0}):
        state["n"] += 1
        return state["n"] > 1

    with pytest.raises(InterruptedError):
        run_job(JobSpec(str(SAMPLES / "vtest.avi"), str(out), config, frames="0-63"), cancelled=cancel_after_first_batch)
    assert list(tmp_path.iterdir()) == []


def test_damaged_clip_is_decoded_where_possible_and_bad_frames_named(tmp_path):
    data = (SAMPLES / "vtest.avi").read_bytes()
    truncated = tmp_path / "truncated.avi"
    truncated.write_bytes(data[: len(data) // 8])
    out = tmp_path / "out.mp4"
    result = run_job(JobSpec(str(truncated), str(out), GOLDEN, frames="0-159"))
    assert result.frames == 160  # frames lost past the cut are concealed and named, never dropped
    assert 60 < result.bad_frames[0] < 159 and result.bad_frames[-1] == 159
    assert len(read_all(out)[0]) == 160


def test_opencv_bug_sample_decodes_fully(tmp_path):
    result = run_job(JobSpec(str(SAMPLES / "Megamind_bugy.avi"), str(tmp_path / "o.mp4"), GOLDEN, frames="0-49"))
    assert result.frames == 50 and result.bad_frames == []


def read_all_frames(path, count):
    info = probe(str(path))
    frames = [image for _, image in FrameReader(info, FrameRange(0, count - 1)).frames()]
    return list(range(count)), np.stack(frames)
