"""SAM 2.1 video backend with a tiny randomly initialised Sam2VideoModel, saved as a transformers folder,
imported into a store (hashes recorded at import, as for the real checkpoints) and loaded by the
product's loader. Every frame goes through the real model (up to a few seconds each on this shared CPU under load),
so the clip is seven 128x96 frames; the module runs the segmenter three times over it (batch 3,
batch 1, and plain transformers streaming without pruning) because the pruning and batching
invariants need that many frames to mean anything. No GPU here: "cuda" is only planned, never run.
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from conftest import SAMPLES
from model_helpers import tiny_sam2, write_store
from video_helpers import read_all, write_sequence

from vfx.config import PipelineConfig, SegmentConfig
from vfx.errors import VfxError
from vfx.frames import FrameBatch, ShotState
from vfx.job import JobSpec, run_job
from vfx.registry import plan
from vfx.segment.prompts import parse_subject
from vfx.segment.sam2 import Sam2VideoSegmenter, load_sam2, new_session

BOX = "box:40,10,40,80"  # a pedestrian in the crop below
KEY = 1  # key frame: frame 0 is tracked backward from it


@pytest.fixture(scope="module")
def clip():
    """Seven real frames of vtest.avi, cropped to 128x96 around a pedestrian."""
    cap = cv2.VideoCapture(str(SAMPLES / "vtest.avi"))
    frames = []
    for _ in range(7):
        ok, bgr = cap.read()
        assert ok
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)[300:396, 330:458])
    return np.stack(frames)


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    return tiny_sam2(tmp_path_factory.mktemp("sam2") / "store")


def _store(root, published, monkeypatch):
    entry, folder = published
    store = write_store(root, {"sam2_tiny": entry}, monkeypatch)
    store.import_from("sam2_tiny", folder)  # `vfx models import sam2_tiny FOLDER`
    return store


@pytest.fixture(scope="module")
def sam2(tmp_path_factory, published):
    with pytest.MonkeyPatch.context() as monkeypatch:
        store = _store(tmp_path_factory.mktemp("store") / "store", published, monkeypatch)
        return load_sam2(store, "sam2_tiny", "cpu")


def _segment(sam2, clip, batch_size):
    """Drive the step the way Pipeline does: prepare with the shot's frames, batches, finish."""
    step = Sam2VideoSegmenter(parse_subject(f"{BOX}@{KEY}").prompts, sam2, feather_px=0)  # hard: compared exactly
    shot = ShotState(clip.shape[2], clip.shape[1], 25.0, 0, len(clip) - 1)
    step.prepare(shot, lambda first, last: ((n, clip[n]) for n in range(first, last + 1)))
    mattes = []
    for start in range(0, len(clip), batch_size):
        numbers = np.arange(start, min(start + batch_size, len(clip)))
        batch = step(FrameBatch(clip[numbers].copy(), numbers, numbers / 25.0), shot)
        mattes.append(batch.matte)
    return np.concatenate(mattes), step.finish(shot)


@pytest.fixture(scope="module")
def runs(sam2, clip):
    return {size: _segment(sam2, clip, size) for size in (3, 1)}


def test_mattes_of_a_real_clip(runs, clip):
    mattes, report = runs[3]
    assert mattes.shape == clip.shape[:3] and mattes.dtype == np.float32
    assert mattes.min() >= 0.0 and mattes.max() <= 1.0
    assert (mattes[KEY] == 1.0).any() and (mattes[KEY] == 0.0).any()  # the prompted subject, not the whole frame
    assert all((m == 1.0).any() for m in mattes)  # tracked both ways from the key frame
    assert report["backend"] == "sam2" and report["key_frames"] == [KEY] and report["empty_frames"] == 0


def test_batch_equals_one_at_a_time(runs):
    together, _ = runs[3]
    alone, _ = runs[1]
    assert np.mean(together != alone) < 0.002  # one encoder pass per batch changes nothing but rounding


def test_memory_bounded_and_pruning_changes_nothing(runs, sam2, clip):
    """The session never holds more than the model reads; plain transformers streaming (which keeps
    every frame) gives the same masks."""
    _, report = runs[1]
    config = sam2.model.config
    prompts = 1
    largest = report["largest_session"]
    assert largest["memories"] <= config.num_maskmem + prompts
    assert largest["outputs"] <= max(config.num_maskmem, config.max_object_pointers_in_encoder) + prompts
    assert largest["pixels"] <= 1 and largest["features"] <= 1

    session = new_session(sam2)  # the documented streaming loop, nothing pruned
    reference = []
    with torch.inference_mode():
        for idx, rgb in enumerate(clip[KEY:]):
            inputs = sam2.processor(images=rgb, return_tensors="pt")
            if idx == 0:
                x, y, w, h = (float(v) for v in BOX.split(":")[1].split(","))
                sam2.processor.add_inputs_to_inference_session(session, frame_idx=0, obj_ids=1, input_boxes=[[[x, y, x + w, y + h]]],
                                                               original_size=inputs.original_sizes[0])
            out = sam2.model(inference_session=session, frame=inputs.pixel_values[0])
            logits = sam2.processor.post_process_masks([out.pred_masks], original_sizes=inputs.original_sizes, binarize=False)[0]
            reference.append((logits[0, 0] > 0).numpy())
    unpruned = sum(len(v) for per_obj in session.output_dict_per_obj.values() for v in per_obj.values())
    assert unpruned == len(clip) - KEY > largest["outputs"]  # without pruning it grows with the shot
    ours = runs[1][0][KEY:] == 1.0
    # exactly the same masks: pruning drops only what the model never reads again (dropping the
    # object pointers beyond num_maskmem frames, say, already changes pixels of frames 5 and 6)
    assert np.array_equal(ours, np.stack(reference))


def test_vfx_run_with_sam2(tmp_path, published, clip, monkeypatch):
    _store(tmp_path / "store", published, monkeypatch)
    (tmp_path / "plate").mkdir()
    plate = write_sequence(tmp_path / "plate", clip[:3], 1000)
    config = PipelineConfig(segment=SegmentConfig(subject=[f"{BOX}@1000"], backend="sam2", feather_px=2), device="cpu",
                            batch_size=2)
    result = run_job(JobSpec(input=plate, output=str(tmp_path / "out.%04d.png"), matte=str(tmp_path / "matte.%04d.png"),
                             config=config))
    assert result.backends["segment"] == "Sam2VideoSegmenter"
    numbers, mattes = read_all(tmp_path / "matte.%04d.png")
    assert numbers == [1000, 1001, 1002] and all((m == 255).any() for m in mattes)
    assert ((mattes > 0) & (mattes < 255)).any()  # soft edge (vfx.matte.soft_edge) where subject meets the world
    assert np.array_equal(read_all(tmp_path / "out.%04d.png")[1], clip[:3])  # a matte alone never edits pixels


def test_modified_weights_refused(tmp_path, published, monkeypatch):
    store = _store(tmp_path / "store", published, monkeypatch)
    weights = store.folder("sam2_tiny") / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-100] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(VfxError, match="model.safetensors sha256 mismatch") as error:
        load_sam2(store, "sam2_tiny", "cpu")
    assert "\n" not in str(error.value)


def test_auto_picks_sam2_on_a_gpu_only(tmp_path, published, monkeypatch):
    _store(tmp_path / "store", published, monkeypatch)
    prompted = PipelineConfig(segment=SegmentConfig(subject=["box:40,10,40,80@3+point:60,40@9"]))
    on_gpu = plan(prompted, "cuda").get("segment")
    assert (on_gpu.backend, on_gpu.model) == ("sam2", "sam2_tiny")
    assert plan(prompted, "cpu").get("segment").backend == "prompt"
    person = PipelineConfig(segment=SegmentConfig(subject=["person"]))
    assert plan(person, "cuda").get("segment").backend != "sam2"  # SAM 2 needs a prompt


def test_a_later_key_frame_prompts_afresh(sam2, clip):
    """``box@0+point@3``: frame 3 takes its prompt as a new conditioning frame (as a click on a later
    frame does in SAM 2's demo), so its matte is what that prompt alone gives; both stay in memory."""
    def run(subject, frames):
        step = Sam2VideoSegmenter(parse_subject(subject).prompts, sam2, feather_px=0)
        shot = ShotState(frames.shape[2], frames.shape[1], 25.0, 0, len(frames) - 1)
        step.prepare(shot, None)
        numbers = np.arange(len(frames))
        matte = step(FrameBatch(frames.copy(), numbers, numbers / 25.0), shot).matte
        return matte, step.finish(shot)

    both, report = run(f"{BOX}@0+point:60,40@3+negpoint:10,10@3", clip[:5])
    alone, _ = run("point:60,40@0+negpoint:10,10@0", clip[3:4])
    assert report["key_frames"] == [0, 3]
    assert np.array_equal(both[3], alone[0])
    tracked, _ = run(f"{BOX}@0", clip[:5])
    assert not np.array_equal(tracked[3], alone[0])  # without the second key frame, frame 3 is tracked instead
    assert report["largest_session"]["memories"] <= sam2.model.config.num_maskmem + 2
