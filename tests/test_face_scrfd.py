"""SCRFD face boxes: a tiny ONNX graph with SCRFD's real input/output signature whose outputs are
chosen constants (plus a small random input-dependent term), imported through `vfx models import`
and run on real Megamind.avi frames."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from face_helpers import MEGAMIND, new_shot
from model_helpers import write_store
from vfx.cli import app
from vfx.config import FaceConfig, PipelineConfig
from vfx.errors import VfxError
from vfx.face.detect import FaceDetector, box_iou
from vfx.face.scrfd import MODEL_NAME, STRIDES, ScrfdDetector, face_detector
from vfx.face.tracks import DetectFaces
from vfx.job import build_steps
from vfx.video import FrameReader, probe
from vfx.video.probe import FrameRange

SIZE = 160  # network input side
ANCHORS = 2
FRAMES = FrameRange(154, 163)  # Roxanne, frontal
MANIFEST = Path(__file__).resolve().parents[1] / "configs" / "models.yaml"


def _cells(stride: int) -> int:
    return (SIZE // stride) ** 2 * ANCHORS


def _blank() -> dict[str, np.ndarray]:
    """Constant outputs: every anchor far below any threshold, zero distances."""
    out = {}
    for stride in STRIDES:
        out[f"score_{stride}"] = np.full((_cells(stride), 1), -12.0, np.float32)  # logits; the graph applies sigmoid
        out[f"bbox_{stride}"] = np.zeros((_cells(stride), 4), np.float32)
        out[f"kps_{stride}"] = np.zeros((_cells(stride), 10), np.float32)
    return out


def anchor(stride: int, row: int, col: int, a: int) -> int:
    return (row * (SIZE // stride) + col) * ANCHORS + a


def tiny_scrfd(path: Path, constants: dict[str, np.ndarray], seed: int = 0, outputs: int = 9) -> Path:
    """Input ``input.1`` [1,3,160,160]; each output = constant + 1e-4 * random * mean(input) (sigmoid for scores)."""
    rng = np.random.default_rng(seed)
    names = [f"{k}_{s}" for k in ("score", "bbox", "kps") for s in STRIDES][:outputs]
    nodes = [helper.make_node("ReduceMean", ["input.1"], ["m"], keepdims=0)]
    inits = []
    for name in names:
        const = constants[name]
        inits += [numpy_helper.from_array(const, f"{name}_c"),
                  numpy_helper.from_array((rng.normal(0, 1e-4, const.shape)).astype(np.float32), f"{name}_w")]
        raw = f"{name}_raw" if name.startswith("score") else name
        nodes += [helper.make_node("Mul", [f"{name}_w", "m"], [f"{name}_p"]),
                  helper.make_node("Add", [f"{name}_c", f"{name}_p"], [raw])]
        if name.startswith("score"):
            nodes.append(helper.make_node("Sigmoid", [raw], [name]))
    graph = helper.make_graph(
        nodes, "scrfd_tiny", [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, SIZE, SIZE])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(constants[n].shape)) for n in names], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _frame(index: int) -> np.ndarray:
    return next(FrameReader(probe(str(MEGAMIND)), FrameRange(index, index)).batches(1)).originals[0]


def _scrfd_store(tmp_path: Path, monkeypatch, model: Path):
    """A store whose manifest holds the real scrfd_10g entry; the model goes in through `vfx models import`."""
    entry = yaml.safe_load(MANIFEST.read_text())["models"][MODEL_NAME]
    store = write_store(tmp_path / "store", {MODEL_NAME: entry}, monkeypatch)
    result = CliRunner().invoke(app, ["models", "import", MODEL_NAME, str(model)])
    assert result.exit_code == 0, result.output
    assert store.status(MODEL_NAME).ok
    return store


def test_decoding_through_letterbox(tmp_path):
    frame = _frame(160)
    h, w = frame.shape[:2]
    scale = SIZE / max(h, w)  # 720x528 -> 160x117, top-left
    consts = _blank()
    i = anchor(16, 3, 5, 1)  # centre (80, 48) in input pixels
    consts["score_16"][i] = 4.0
    consts["bbox_16"][i] = [2.0, 1.5, 2.5, 3.0]
    kps = np.array([-1.0, -0.5, 1.0, -0.5, 0.0, 0.5, -0.8, 1.5, 0.8, 1.5], np.float32)
    consts["kps_16"][i] = kps
    j = anchor(16, 3, 5, 0)  # same place, slightly different box, lower score: removed by NMS
    consts["score_16"][j] = 2.0
    consts["bbox_16"][j] = [2.1, 1.5, 2.4, 3.0]
    consts["score_8"][anchor(8, 15, 2, 0)] = -1.0  # score 0.27: under the threshold
    detector = ScrfdDetector(str(tiny_scrfd(tmp_path / "scrfd.onnx", consts)))
    assert detector.input_size == (SIZE, SIZE)
    faces = detector.detect(frame)
    assert len(faces) == 1
    face = faces[0]
    centre = np.array([5 * 16, 3 * 16], np.float32)
    x1, y1 = centre - np.array([2.0, 1.5]) * 16
    x2, y2 = centre + np.array([2.5, 3.0]) * 16
    expected_box = np.array([x1, y1, x2 - x1, y2 - y1]) / scale
    np.testing.assert_allclose(face.box, expected_box, atol=0.5)
    np.testing.assert_allclose(face.keypoints, (centre + kps.reshape(5, 2) * 16) / scale, atol=0.5)
    assert face.score == pytest.approx(1 / (1 + np.exp(-4.0)), abs=1e-3)


def test_wrong_signature_is_refused(tmp_path):
    path = tiny_scrfd(tmp_path / "six.onnx", _blank(), outputs=6)
    with pytest.raises(VfxError, match="expected SCRFD's 9 outputs"):
        ScrfdDetector(str(path))


def test_noncommercial_licence_is_refused(tmp_path, monkeypatch):
    _scrfd_store(tmp_path, monkeypatch, tiny_scrfd(tmp_path / "scrfd.onnx", _blank()))
    with pytest.raises(VfxError, match="non-commercial research only.*--allow-noncommercial"):
        face_detector("scrfd")
    with pytest.raises(VfxError, match="--allow-noncommercial"):
        build_steps(PipelineConfig(face=FaceConfig(rejuvenate=0.5, detector="scrfd")), "cpu", gate=object())
    assert isinstance(face_detector("scrfd", allow_noncommercial=True), FaceDetector)


def test_missing_model_says_how_to_import(tmp_path, monkeypatch):
    entry = yaml.safe_load(MANIFEST.read_text())["models"][MODEL_NAME]
    write_store(tmp_path / "store", {MODEL_NAME: entry}, monkeypatch)
    with pytest.raises(VfxError, match="scrfd_10g is not in the store"):
        face_detector("scrfd", allow_noncommercial=True)


def test_detect_faces_with_scrfd_on_real_frames(tmp_path, monkeypatch):
    """A graph whose one confident anchor encodes Roxanne's box (from mediapipe on frame 160): DetectFaces
    with the SCRFD detector from the store gives her face mesh landmarks through the shot."""
    frame = _frame(160)
    reference = FaceDetector().detect(frame)[0]
    scale = SIZE / max(frame.shape[:2])
    x, y, bw, bh = np.array(reference.box) * scale
    stride = 16
    col, row = int((x + bw / 2) // stride), int((y + bh / 2) // stride)
    cx, cy = col * stride, row * stride
    consts = _blank()
    i = anchor(stride, row, col, 0)
    consts[f"score_{stride}"][i] = 5.0
    consts[f"bbox_{stride}"][i] = np.array([cx - x, cy - y, x + bw - cx, y + bh - cy]) / stride
    _scrfd_store(tmp_path, monkeypatch, tiny_scrfd(tmp_path / "scrfd.onnx", consts))
    step = DetectFaces(face_detector("scrfd", allow_noncommercial=True))
    shot = new_shot(FRAMES)
    faces = []
    for batch in FrameReader(probe(str(MEGAMIND)), FRAMES).batches(5):
        faces.extend(step(batch, shot).faces)
    assert len(faces) == len(FRAMES)
    for frame_faces in faces:
        assert len(frame_faces) == 1
        face = frame_faces[0]
        assert face.landmarks.shape == (478, 2)
        assert "detect" not in face.refused_ops
        assert box_iou(face.box, reference.box) > 0.5
    assert len({f[0].track_id for f in faces}) == 1
