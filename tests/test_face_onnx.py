"""ONNX face backends with tiny random graphs of the real signatures, through the real gate."""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from face_helpers import HAL_FRAMES, granted, make_consent, run_step
from vfx.errors import VfxError
from vfx.face.lipsync import LipSync
from vfx.face.rejuvenate import Rejuvenate
from vfx.video.probe import FrameRange

FRAMES = FrameRange(148, 163)  # Hal 148-153, Roxanne 154-163


def _save(graph, path) -> str:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return str(path)


def tiny_age_model(path) -> str:
    """image + strength * (tanh(conv(image)) - image): the real I/O, random 3x3 conv weights."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array((rng.normal(0, 0.1, (3, 3, 3, 3)) + np.eye(3)[:, :, None, None] / 9).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["image", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Tanh", ["c"], ["t"]), helper.make_node("Sub", ["t", "image"], ["d"]),
             helper.make_node("Mul", ["d", "strength"], ["m"]), helper.make_node("Add", ["image", "m"], ["edited"])]
    graph = helper.make_graph(nodes, "age", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 256, 256]),
                                             helper.make_tensor_value_info("strength", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("edited", TensorProto.FLOAT, [1, 3, 256, 256])], [w])
    return _save(graph, path)


def tiny_lip_model(path) -> str:
    """sigmoid(conv(face) + mean(mel)): the real Wav2Lip-style I/O, random weights."""
    rng = np.random.default_rng(1)
    w = numpy_helper.from_array(rng.normal(0, 0.2, (3, 6, 3, 3)).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["face", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("ReduceMean", ["mel"], ["m"], axes=[1, 2, 3], keepdims=1),
             helper.make_node("Add", ["c", "m"], ["a"]), helper.make_node("Sigmoid", ["a"], ["generated"])]
    graph = helper.make_graph(nodes, "lip", [helper.make_tensor_value_info("face", TensorProto.FLOAT, [1, 6, 96, 96]),
                                             helper.make_tensor_value_info("mel", TensorProto.FLOAT, [1, 1, 80, 16])],
                              [helper.make_tensor_value_info("generated", TensorProto.FLOAT, [1, 3, 96, 96])], [w])
    return _save(graph, path)


@pytest.fixture(scope="module")
def consent(tmp_path_factory):
    return make_consent(tmp_path_factory.mktemp("consent"), ("rejuvenate", "lipsync"))


def _check_gated(src, out, faces, op):
    edited = [i for i, f in enumerate(faces) if granted(f, op)]
    assert edited and all(FRAMES.first + i >= 154 for i in edited)
    assert any(not np.array_equal(out[i], src[i]) for i in edited)
    for i in range(len(src)):
        if FRAMES.first + i in HAL_FRAMES or i not in edited:
            assert np.array_equal(out[i], src[i])


def test_onnx_rejuvenate_gated(consent, tmp_path):
    step = Rejuvenate(consent.gate(), 1.0, backend="onnx", model_path=tiny_age_model(tmp_path / "age.onnx"))
    src, out, faces, _ = run_step(step, FRAMES)
    _check_gated(src, out, faces, "rejuvenate")


def test_onnx_lipsync_gated(consent, tmp_path):
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is not installed (apt-get install espeak-ng)")
    wav = tmp_path / "line.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), "Hello there."], check=True)
    step = LipSync(consent.gate(), str(wav), backend="onnx", model_path=tiny_lip_model(tmp_path / "lip.onnx"))
    src, out, faces, _ = run_step(step, FRAMES)
    _check_gated(src, out, faces, "lipsync")


def test_wrong_signature_is_refused(consent, tmp_path):
    with pytest.raises(VfxError, match="expected input 'image'"):
        Rejuvenate(consent.gate(), 1.0, backend="onnx", model_path=tiny_lip_model(tmp_path / "lip.onnx"))
