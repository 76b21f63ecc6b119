"""The network: budget, MAC counting, graph structure, and int8 TFLite conversion."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import layers

from train.config import ModelConfig
from train.model import bin_centres, build_model, count_macs, relief_to_bins

TINY = ModelConfig(n_bins=10, s1_widths=(8, 8, 16, 16), s2_widths=(8, 8, 16, 16), blocks=(0,))
# Layer types that convert to int8 TFLite builtins (BatchNormalization folds into the convolution).
ALLOWED = (layers.InputLayer, layers.Conv2D, layers.DepthwiseConv2D, layers.BatchNormalization, layers.ReLU,
           layers.Concatenate, layers.UpSampling2D, layers.Softmax, layers.Add, layers.Rescaling,
           layers.Identity)


@pytest.fixture(scope="module")
def default_model():
    return build_model(ModelConfig())


def test_default_model_is_within_budget(default_model):
    stats = count_macs(default_model)
    assert stats.macs <= 100_000_000 and stats.params <= 1_000_000, stats[:2]
    assert stats.macs > 50_000_000  # the budget is used, not wasted


def test_over_budget_config_is_refused():
    with pytest.raises(ValueError, match="over budget.*s1_widths"):
        build_model(ModelConfig(s1_widths=(64, 128, 256, 512, 512)))


def test_mac_count_by_hand():
    x = keras.Input((10, 10, 8))
    y = layers.Conv2D(16, 3, padding="same", name="c")(x)  # 10·10·3·3·8·16 = 115 200
    y = layers.DepthwiseConv2D(3, strides=2, padding="same", name="dw")(y)  # 5·5·3·3·16 = 3 600
    y = layers.Conv2D(4, 1, groups=2, name="g")(y)  # 5·5·1·1·16·4 / 2 = 800
    y = layers.Dense(3, name="d")(y)  # 5·5·4·3 = 300
    stats = count_macs(keras.Model(x, y))
    assert [stats.per_layer[k] for k in ("c", "dw", "g", "d")] == [115_200, 3_600, 800, 300]
    assert stats.macs == 119_900


def test_graph_outputs_layers_and_soft_argmax(default_model):
    m = default_model
    assert set(m.output) == {"bins", "relief"}
    assert tuple(m.output["bins"].shape[1:]) == (80, 80, 21)
    assert tuple(m.output["relief"].shape[1:]) == (80, 80, 1)
    bad = {type(layer).__name__ for layer in m.layers if not isinstance(layer, ALLOWED)}
    assert not bad, f"layers that may not convert to int8 builtins: {bad}"
    for name in ("stage1_relief", "grey", "stage2_input", "stage2_delta"):
        m.get_layer(name)  # named sub-outputs stay inspectable
    probe = keras.Model(m.input, {"bins": m.output["bins"], "s1": m.get_layer("stage1_relief").output,
                                  "s2in": m.get_layer("stage2_input").output})
    x = np.random.default_rng(0).uniform(0, 255, (2, 160, 160, 3)).astype(np.float32)
    out = probe.predict(x, verbose=0)
    expected = (out["bins"][..., :-1] * bin_centres(ModelConfig())).sum(-1)  # background contributes 0
    np.testing.assert_allclose(out["s1"][..., 0], expected, atol=1e-3)
    grey = (x / 127.5 - 1) @ np.array([0.299, 0.587, 0.114])
    np.testing.assert_allclose(out["s2in"][..., 0], grey, atol=1e-4)  # raw pixels in, normalised inside


def test_relief_to_bins():
    cfg = ModelConfig(n_bins=4, relief_min_mm=-20, relief_max_mm=20)  # 10 mm bins
    relief = np.array([-25.0, -20.0, -0.1, 0.0, 19.9, 40.0, 5.0])
    face = np.array([True] * 6 + [False])
    np.testing.assert_array_equal(relief_to_bins(relief, face, cfg), [0, 0, 1, 2, 3, 3, 4])


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Statistics for quantized inputs")
def test_converts_to_int8_tflite_builtins_only():
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    model = build_model(TINY)
    rng = np.random.default_rng(0)
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([rng.uniform(0, 255, (1, 160, 160, 3)).astype(np.float32)]
                                           for _ in range(3))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.int8
    it = Interpreter(model_content=conv.convert(),
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    ops = it._get_ops_details()
    names = {o["op_name"] for o in ops}
    assert names <= {"CONV_2D", "DEPTHWISE_CONV_2D", "RESIZE_BILINEAR", "CONCATENATION", "MUL", "ADD",
                     "SOFTMAX", "QUANTIZE"}, names
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    dtypes = {tensors[i]["dtype"] for o in ops for i in [*o["inputs"], *o["outputs"]] if i >= 0}
    assert dtypes <= {np.int8, np.int32}, dtypes  # int32 = biases
    inp = it.get_input_details()[0]
    scale, zero = inp["quantization"]
    assert abs(scale - 1.0) < 0.01 and zero == -128  # the device feeds pixel - 128
    assert it.get_signature_list()["serving_default"]["outputs"] == ["bins", "relief"]
    it.set_tensor(inp["index"], (rng.integers(0, 256, (1, 160, 160, 3)) - 128).astype(np.int8))
    it.invoke()
    shapes = sorted(tuple(d["shape"]) for d in it.get_output_details())
    assert shapes == [(1, 80, 80, 1), (1, 80, 80, 11)]
