"""SAM backend with a tiny ViT SAM saved like the real checkpoints, loaded through the same code."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from conftest import SAMPLES
from model_helpers import TINY_SAM, tiny_sam, write_store
from video_helpers import read_all, write_sequence

from vfx.config import PipelineConfig, SegmentConfig
from vfx.errors import VfxError
from vfx.job import JobSpec, run_job
from vfx.segment.sam import SamSegmenter, build_sam, load_sam
from vfx.segment.prompts import parse_subject

BOX = "box:40,10,40,80@1002"  # a pedestrian in the crop below, key frame inside the shot


@pytest.fixture(scope="module")
def plate(tmp_path_factory):
    """Six real frames of vtest.avi, cropped to 128x96, as an image sequence starting at 1000."""
    cap = cv2.VideoCapture(str(SAMPLES / "vtest.avi"))
    frames = []
    for _ in range(6):
        ok, bgr = cap.read()
        assert ok
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)[300:396, 330:458])
    folder = tmp_path_factory.mktemp("plate")
    return write_sequence(folder, np.stack(frames), 1000), np.stack(frames)


@pytest.fixture()
def store(tmp_path, monkeypatch):
    root = tmp_path / "store"
    return write_store(root, {"sam_tiny": tiny_sam(root)}, monkeypatch)


def _run(plate_path, out_dir, batch_size, subject=BOX):
    config = PipelineConfig(segment=SegmentConfig(subject=[subject], backend="sam", feather_px=0), device="cpu",
                            batch_size=batch_size)
    out_dir.mkdir()
    run_job(JobSpec(input=plate_path, output=str(out_dir / "out.%04d.png"), matte=str(out_dir / "matte.%04d.png"),
                    config=config))
    return read_all(out_dir / "matte.%04d.png")


def test_batched_encoder_equals_per_frame(store, plate):
    _, frames = plate
    step = SamSegmenter(parse_subject(BOX).prompt, load_sam(store, "sam_tiny", "cpu"), "cpu")
    together = step.embed(list(frames[:4]))
    alone = torch.cat([step.embed([f]) for f in frames[:4]])
    assert together.shape == (4, TINY_SAM["prompt_embed_dim"], 16, 16)
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-5)


def test_vfx_run_sam_tracks_both_ways_batch_invariant(store, plate, tmp_path):
    plate_path, frames = plate
    numbers, mattes4 = _run(plate_path, tmp_path / "b4", batch_size=4)
    _, mattes1 = _run(plate_path, tmp_path / "b1", batch_size=1)
    assert numbers == list(range(1000, 1006))
    assert mattes4.shape[:3] == frames.shape[:3]
    assert all((m > 127).any() for m in mattes4)  # the subject is found on the key frame and tracked both ways
    assert np.mean(np.abs(mattes4.astype(int) - mattes1.astype(int))) < 1.0  # same masks, batch 4 or 1
    _, out = read_all(tmp_path / "b4" / "out.%04d.png")
    assert np.array_equal(out, frames)  # segmentation alone never edits pixels


def test_corrupt_checkpoint_refused(store, plate, tmp_path):
    path = store.folder("sam_tiny") / "sam_tiny.pth"
    path.write_bytes(path.read_bytes()[:-8] + b"\x00" * 8)
    with pytest.raises(VfxError, match="sam_tiny.pth sha256 mismatch"):
        _run(plate[0], tmp_path / "bad", batch_size=2)


def test_checkpoint_must_fit_the_architecture(store, tmp_path, monkeypatch):
    entry = dict(tiny_sam(tmp_path / "other"), architecture=dict(TINY_SAM, depth=3))
    other = write_store(tmp_path / "other", {"sam_tiny": entry}, monkeypatch)
    with pytest.raises(VfxError, match="does not fit the manifest's architecture"):
        load_sam(other, "sam_tiny", "cpu")
    assert sum(p.numel() for p in build_sam(TINY_SAM).parameters()) < 2_000_000


@pytest.mark.parametrize("size", ["b", "l", "h"])
def test_manifest_architectures_match_the_official_checkpoints(size):
    """The manifest's vit_b/l/h builds have exactly the parameter names and shapes of segment-anything's
    own builders, i.e. of the published checkpoints (built on the meta device: no memory, no weights)."""
    from segment_anything import sam_model_registry

    from vfx.models import load_manifest

    with torch.device("meta"):
        ours = build_sam(load_manifest().entry(f"sam_vit_{size}").architecture).state_dict()
        official = sam_model_registry[f"vit_{size}"]().state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in official.items()}


def test_person_subject_refined_by_sam_from_person_boxes(store, tmp_path):
    cap = cv2.VideoCapture(str(SAMPLES / "vtest.avi"))
    frames = np.stack([cv2.resize(cv2.cvtColor(cap.read()[1], cv2.COLOR_BGR2RGB), (384, 288)) for _ in range(3)])
    (tmp_path / "plate").mkdir()
    plate = write_sequence(tmp_path / "plate", frames, 1)
    results = {}
    for backend in ("person", "sam"):
        config = PipelineConfig(segment=SegmentConfig(subject=["person"], backend=backend, feather_px=0), device="cpu",
                                batch_size=3)
        result = run_job(JobSpec(input=plate, output=str(tmp_path / f"{backend}.%04d.png"),
                                 matte=str(tmp_path / f"{backend}-matte.%04d.png"), config=config))
        results[backend] = read_all(tmp_path / f"{backend}-matte.%04d.png")[1][..., 0] > 127
        assert result.backends["segment"] == {"person": "PersonSegmenter", "sam": "SamPersonSegmenter"}[backend]
    assert results["person"].any() and results["sam"].any()
    assert results["sam"][~results["person"]].mean() < 0.5  # SAM works inside the people the person matte found
