"""Full-integer int8 post-training quantisation of a run's model, and a check that the graph is int8.

    quantize(run_dir, out_path, n_calib=300) -> QuantResult

Converter: `tf.lite.TFLiteConverter.from_keras_model` with `Optimize.DEFAULT`, `TFLITE_BUILTINS_INT8` only
(an op without an int8 kernel fails the conversion instead of silently staying float) and int8 input and
outputs. The network's input is RGB 0..255 (normalised inside), and the device feeds `pixel - 128`, so the
input quantisation must be exactly scale 1, zero point -128: the first calibration crop has one pixel set
to 0 and one to 255 so the calibrated input range is 0..255 whatever the crops' contrast (2 of 7.7 M
calibration pixels), and the result is checked.

Calibration set: `n_calib` (≥ 100) crops of the run's *validation* split made exactly as training makes
them (`train.data.make_example`: the device crop from the face box and eyes; no photometric augmentation,
no noise), evenly spaced over the split. A split with fewer samples than `n_calib` is walked again with
the training box jitter (a detector's box error), deterministically seeded; fewer than 16 distinct
validation faces is refused.

Graph check: every op of the converted model is listed (LiteRT interpreter, no delegate) and the
conversion fails, naming the ops, if any op reads or writes a float tensor, dequantises, or has a
non-int8 activation (int32 is allowed only for constants: biases, resize sizes).
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from firmware_app.depth import output_name_by_shape
from firmware_app.preprocess import GRID_SIZE, INPUT_SIZE
from train.config import Config
from train.data import Source, make_example
from train.synth.dataset_index import DatasetIndex

log = logging.getLogger(__name__)
DEFAULT_CALIB = 300
MIN_CALIB = 100
MIN_DISTINCT = 16  # distinct validation samples below which calibration is refused
MAX_LISTED = 12  # problems shown in a QuantizationError
INPUT_SCALE, INPUT_ZERO_POINT = 1.0, -128  # the device feeds int8(pixel - 128)


class ConvertError(ValueError):
    """Conversion cannot go on; the message names the file or setting and what to do."""


class CalibrationError(ConvertError):
    pass


class QuantizationError(ConvertError):
    """The converted graph is not int8 end to end (or its input is not pixel - 128)."""


@dataclass(frozen=True)
class QuantParams:
    name: str  # "rgb" for the input; "bins" / "relief" for outputs
    index: int  # TFLite tensor index
    tensor: str  # TFLite tensor name
    shape: tuple[int, ...]
    dtype: str
    scale: float
    zero_point: int

    def to_manifest(self) -> dict:
        return {"name": self.name, "index": self.index, "tensor": self.tensor, "shape": list(self.shape),
                "dtype": self.dtype, "scale": self.scale, "zero_point": self.zero_point}


@dataclass(frozen=True)
class OpInfo:
    index: int
    op: str  # e.g. CONV_2D
    inputs: tuple[str, ...]  # dtype names, -1 (optional) inputs left out
    outputs: tuple[str, ...]


@dataclass(frozen=True)
class QuantResult:
    path: Path
    size_bytes: int
    ops: tuple[OpInfo, ...] = field(repr=False)
    input: QuantParams
    outputs: tuple[QuantParams, ...]  # bins, relief (and live for v2 models)
    n_calib: int
    distinct_calib_samples: int
    seconds: float

    def op_counts(self) -> dict[str, int]:
        return dict(Counter(o.op for o in self.ops).most_common())

    def output(self, name: str) -> QuantParams:
        return next(o for o in self.outputs if o.name == name)


# ---- the run ----

def load_checked_run(run_dir) -> tuple[Config, object, dict]:
    """load_run with errors that say what to do, and the checkpoint checked against its run.json."""
    from train.model import output_shapes
    from train.train import load_run

    run_dir = Path(run_dir)
    try:
        cfg, model, info = load_run(run_dir)
    except FileNotFoundError as e:
        raise ConvertError(str(e)) from e
    except (ValueError, OSError, KeyError, TypeError) as e:
        raise ConvertError(f"{run_dir}/model.keras or run.json could not be loaded ({e}); the run is "
                           "damaged: train it again (`make train`) or point to another run directory") from e
    want_out = {k: (None, *v) for k, v in output_shapes(cfg.model).items()}
    got_out = {k: tuple(v.shape) for k, v in model.output.items()} if isinstance(model.output, dict) else {}
    got_in = tuple(model.input.shape) if not isinstance(model.input, (list, dict)) else None
    if got_in != (None, INPUT_SIZE, INPUT_SIZE, 3) or got_out != want_out:
        raise ConvertError(f"{run_dir}/model.keras does not match its run.json (input {got_in}, outputs "
                           f"{got_out}; the config says {want_out}): the checkpoint is from another run. "
                           "Re-train or restore the matching model.keras")
    if info.get("status") != "done":
        log.warning("%s: training status is %r; converting its best checkpoint so far", run_dir,
                    info.get("status"))
    return cfg, model, info


def dataset_of(info: dict, dataset=None) -> DatasetIndex:
    """The dataset a run was trained on (or `dataset`); warns when its index changed since training."""
    from train.synth.shards import sha256_of

    if isinstance(dataset, DatasetIndex):  # already loaded (and warned about)
        return dataset
    index = DatasetIndex.load(dataset or info["dataset"]["path"])
    if sha256_of(Path(index.root) / "index.json") != info["dataset"].get("index_sha256"):
        log.warning("%s: not the dataset index this run was trained on (sha256 differs); calibrating and "
                    "verifying on it anyway", index.root)
    return index


# ---- calibration ----

def check_n_calib(n: int) -> None:
    if n < MIN_CALIB:
        raise CalibrationError(f"calibration set of {n} crops is too small: int8 ranges from fewer than "
                               f"{MIN_CALIB} real crops are unreliable; use --n-calib {MIN_CALIB} or more "
                               f"(default {DEFAULT_CALIB})")


def calibration_crops(cfg: Config, index: DatasetIndex, n: int, split: str = "val",
                      seed: int = 0) -> tuple[np.ndarray, int]:
    """(n, 160, 160, 3) uint8 real crops of `split` and the number of distinct samples they come from."""
    check_n_calib(n)
    try:
        src = Source(index, split, cache=4, max_samples=n)
    except ValueError as e:
        raise CalibrationError(f"{e}; calibration needs real {split} crops (`make data`)") from e
    if len(src) < MIN_DISTINCT:
        raise CalibrationError(f"{index.root}: split {split!r} has {len(src)} samples, calibration needs at "
                               f"least {MIN_DISTINCT} distinct faces; generate a larger dataset")
    if len(src) < n:
        log.warning("%s: %d %s samples for %d calibration crops: the rest are box-jittered crops of the same "
                    "faces", index.root, len(src), split, n)
    crops = np.empty((n, INPUT_SIZE, INPUT_SIZE, 3), np.uint8)
    for k in range(n):
        p, j = divmod(k, len(src))
        rng = None if p == 0 else np.random.default_rng([seed, p, j])  # box jitter only, no noise
        crops[k] = make_example(src.sample(*src.keys[j]), cfg.data, cfg.model, rng).rgb
    return crops, min(n, len(src))


def representative(crops: np.ndarray):
    """The converter's representative dataset: float 0..255 crops, the first one pinning 0 and 255."""
    first = crops[0].copy()
    first[0, 0], first[0, 1] = 0, 255

    def gen():
        for k in range(len(crops)):
            yield [(first if k == 0 else crops[k])[None].astype(np.float32)]

    return gen


def convert_int8(model, crops: np.ndarray, relief_range: tuple[float, float] | None = None) -> bytes:
    """Full-integer int8 PTQ: int8 weights and activations, int8 input and outputs (what the device runs).

    `relief_range` (the model config's relief_min_mm, relief_max_mm) clips the relief output before
    conversion: calibration then spreads the output's 256 codes over that range (0.39 mm steps for
    [-60, 40]) instead of over whatever the background pixels reach (the committed bundle, converted
    without it, got 2.19 mm steps from a -517..41 mm calibration range).
    """
    return _convert(with_clipped_relief(model, relief_range), crops, activations="int8")


def convert_16x8(model, crops: np.ndarray, relief_range: tuple[float, float] | None = None) -> bytes:
    """int8 weights, int16 activations, int16 input and outputs: TFLite's 16×8 PTQ, studied, not shipped
    (its kernels are the reference ones: no XNNPACK, so it is slower on the device)."""
    return _convert(with_clipped_relief(model, relief_range), crops, activations="int16")


def with_clipped_relief(model, relief_range: tuple[float, float] | None):
    """`model` with its relief output clipped to `relief_range` (MINIMUM/MAXIMUM: int8 builtins), or itself.
    Clipping changes nothing a face pixel can be trained to (its targets lie in the range)."""
    if relief_range is None:
        return model
    import keras

    lo, hi = map(float, relief_range)
    rgb = keras.Input(model.input_shape[1:], name="rgb")
    out = model(rgb)
    clipped = {**out, "relief": keras.ops.clip(out["relief"], lo, hi)}
    return keras.Model(rgb, clipped, name=f"{model.name}_clipped")


def _convert(model, crops: np.ndarray, activations: str) -> bytes:
    import tensorflow as tf

    ops, io_type = {
        "int8": (tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.int8),
        "int16": (tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8, tf.int16),
    }[activations]
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative(crops)
    converter.target_spec.supported_ops = [ops]
    converter.inference_input_type = io_type
    converter.inference_output_type = io_type
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # Keras' export prints its whole signature
            return converter.convert()
    except Exception as e:  # the converter raises ConverterError and friends with the failing op in the text
        raise QuantizationError(f"{activations} conversion failed, probably an op without an {activations} "
                                f"kernel: {e}. Use only the layers listed in train/model.py's docstring"
                                ) from e


# ---- the converted graph ----

def _interpreter(path: Path):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    # no default delegate: XNNPACK would replace the ops by one DELEGATE node and hide them
    interp = Interpreter(model_path=str(path),
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interp.allocate_tensors()
    return interp


def graph_ops(path: Path) -> list[OpInfo]:
    """Every op of a converted model with its operand dtypes, unchecked (e.g. the study's 16×8 graph)."""
    return list_ops(_interpreter(path))[0]


def list_ops(interpreter) -> tuple[list[OpInfo], list[str]]:
    """Every op with its operand dtypes, and the problems that make the graph not int8 end to end."""
    details = interpreter._get_ops_details()
    produced = {int(t) for d in details for t in d["outputs"] if t >= 0}
    graph_inputs = {d["index"] for d in interpreter.get_input_details()}

    def dtype(t: int) -> str:
        return np.dtype(interpreter._get_tensor_details(int(t), 0)["dtype"]).name

    ops, problems = [], []
    for d in details:
        ins = [int(t) for t in d["inputs"] if t >= 0]
        outs = [int(t) for t in d["outputs"] if t >= 0]
        op = OpInfo(int(d["index"]), d["op_name"], tuple(map(dtype, ins)), tuple(map(dtype, outs)))
        ops.append(op)
        if op.op == "DEQUANTIZE":
            problems.append(f"op {op.index} DEQUANTIZE (a float path)")
        for role, tensors in (("input", ins), ("output", outs)):
            for t in tensors:
                dt = dtype(t)
                constant = t not in produced and t not in graph_inputs
                if dt != "int8" and not (dt == "int32" and constant):
                    name = interpreter._get_tensor_details(t, 0)["name"]
                    problems.append(f"op {op.index} {op.op} {role} {name!r} is {dt}")
    return ops, problems


def named_outputs(interpreter) -> dict[str, dict]:
    """Output details by name: the signature's names ("bins", "relief"[, "live"]), else told apart by
    shape as the device does (firmware_app.depth.output_name_by_shape)."""
    details = interpreter.get_output_details()
    by_index = {d["index"]: d for d in details}
    try:
        runner = interpreter.get_signature_runner().get_output_details()
        named = {k: by_index[d["index"]] for k, d in runner.items() if d["index"] in by_index}
    except (ValueError, KeyError, RuntimeError):
        named = {}
    if not {"bins", "relief"} <= set(named):
        named = {output_name_by_shape(d["shape"]): d for d in details}
    return named


def _params(d: dict, name: str) -> QuantParams:
    scale, zp = d["quantization"]
    return QuantParams(name, int(d["index"]), d["name"], tuple(int(v) for v in d["shape"]),
                       np.dtype(d["dtype"]).name, float(scale), int(zp))


def inspect_tflite(path: Path) -> tuple[list[OpInfo], QuantParams, tuple[QuantParams, ...]]:
    """Ops and input/output quantisation of a converted depth model; QuantizationError if not int8."""
    interp = _interpreter(path)
    ops, problems = list_ops(interp)
    (inp,) = interp.get_input_details()
    outs = interp.get_output_details()
    named = named_outputs(interp)
    names = [k for k in ("bins", "relief", "live") if k in named]
    if not {"bins", "relief"} <= set(named) or len(outs) != len(names) or named["relief"]["shape"][-1] != 1:
        problems.append(f"outputs {[tuple(d['shape']) for d in outs]}: expected one bins, one relief and "
                        "at most one live logit")
    q_in = _params(inp, "rgb")
    if q_in.dtype != "int8" or abs(q_in.scale - INPUT_SCALE) > 1e-6 or q_in.zero_point != INPUT_ZERO_POINT:
        problems.insert(0, f"input is {q_in.dtype} scale {q_in.scale} zero point {q_in.zero_point}; the "
                        f"device feeds int8 pixel - 128 (scale {INPUT_SCALE}, zero point {INPUT_ZERO_POINT})")
    if problems:
        shown = problems[:MAX_LISTED] + ([f"... and {len(problems) - MAX_LISTED} more"]
                                         if len(problems) > MAX_LISTED else [])
        raise QuantizationError(f"{path}: not int8 end to end:\n  " + "\n  ".join(shown) +
                                "\nReplace the layers behind these ops (train/model.py) and convert again")
    outputs = tuple(_params(named[k], k) for k in names)
    if outputs[0].shape[1:3] != (GRID_SIZE, GRID_SIZE):
        raise QuantizationError(f"{path}: bins output {outputs[0].shape}, expected an {GRID_SIZE} grid")
    return ops, q_in, outputs


def quantize(run_dir, out_path, n_calib: int = DEFAULT_CALIB, *, dataset=None, run=None) -> QuantResult:
    """Convert the run's best model to full-integer int8 at `out_path` (written atomically) and check it.

    `run` may be a (config, model, run.json) triple already loaded with `load_checked_run`.
    """
    from train.model_v2 import deploy_graph  # keras: only once there is something to convert

    t0 = time.perf_counter()
    check_n_calib(n_calib)  # before loading anything
    cfg, model, info = run or load_checked_run(run_dir)
    index = dataset_of(info, dataset)
    crops, distinct = calibration_crops(cfg, index, n_calib, seed=cfg.train.seed)
    log.info("calibrating on %d validation crops (%d distinct samples)", len(crops), distinct)
    data = convert_int8(deploy_graph(model, cfg.model), crops, cfg.model.relief_range_mm)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    tmp.write_bytes(data)
    try:
        ops, q_in, q_out = inspect_tflite(tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(out_path)
    result = QuantResult(out_path, len(data), tuple(ops), q_in, q_out, n_calib, distinct,
                         time.perf_counter() - t0)
    log.info("%s: %.1f KB, %d ops %s, %.0f s", out_path, len(data) / 1024, len(ops), result.op_counts(),
             result.seconds)
    return result
