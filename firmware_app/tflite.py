"""The one place that picks a TFLite interpreter: ai_edge_litert, else tflite_runtime.

Never TensorFlow: the device has only a TFLite runtime, and the workstation pins ai-edge-litert too
(bit-identical to tf.lite, see TOOLCHAIN.md), so both run the shipped model the same way.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)


def _interpreter_class() -> tuple[type, str]:
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, "ai_edge_litert"
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter  # needs numpy < 2
    except ImportError as e:
        raise ImportError(
            "no TFLite runtime found: pip install ai-edge-litert (or tflite-runtime on a numpy<2 device)"
        ) from e
    return Interpreter, "tflite_runtime"


def runtime_name() -> str:
    """"ai_edge_litert" or "tflite_runtime": the runtime make_interpreter uses in this environment."""
    return _interpreter_class()[1]


def make_interpreter(model_path: Path | str, num_threads: int = 1):
    """An interpreter for `model_path` with its tensors allocated, built once per model."""
    path = Path(model_path)
    if not path.is_file():
        raise FileNotFoundError(f"TFLite model {path} does not exist")
    cls, runtime = _interpreter_class()
    try:
        interpreter = cls(model_path=str(path), num_threads=int(num_threads))
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        raise ValueError(f"{path}: not a loadable TFLite model ({e})") from e
    log.debug("%s loaded with %s, %d thread(s)", path.name, runtime, num_threads)
    return interpreter
