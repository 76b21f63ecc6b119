"""Swap a functional model's layers for training-only subclasses and back (binary weights, fake quant).

`swap_layers` clones the graph (same names and connections) with a layer factory and copies the
weights by name; `to_plain` clones it back to the stock Keras classes, replacing each swapped layer's
weights with what its forward pass really used (`export_weights()`). So model.keras files and the int8
conversion only ever see stock layers, and loading a study model needs no custom objects.
"""

from __future__ import annotations

from collections.abc import Callable

import keras


class Swapped:
    """Mixin of a training-only layer: names its stock class and the weights its forward pass uses."""

    plain_class: type
    extra_config: tuple[str, ...] = ()

    def export_weights(self) -> list:
        return self.get_weights()


def depthwise_call(layer, inputs, kernel):
    """DepthwiseConv2D.call with `kernel` for layer.kernel (Keras has no convolution_op hook there)."""
    out = keras.ops.depthwise_conv(inputs, kernel, strides=layer.strides, padding=layer.padding,
                                   dilation_rate=layer.dilation_rate, data_format=layer.data_format)
    if layer.use_bias:
        if layer.data_format != "channels_last":
            raise ValueError(f"{layer.name}: only channels_last depthwise convolutions with a bias")
        out = out + layer.bias
    return layer.activation(out) if layer.activation is not None else out


def swap_layers(model: keras.Model, factory: Callable[[keras.layers.Layer], keras.layers.Layer | None]
                ) -> keras.Model:
    """Clone `model`, replacing each layer for which `factory` returns a layer; weights copied by name."""

    def clone(layer):
        new = factory(layer)
        return new if new is not None else layer.__class__.from_config(layer.get_config())

    swapped = keras.models.clone_model(model, clone_function=clone)
    for layer in model.layers:
        if layer.weights:
            swapped.get_layer(layer.name).set_weights(layer.get_weights())
    return swapped


def to_plain(model: keras.Model) -> keras.Model:
    """The same graph with stock layers and the weights the swapped layers computed with."""

    def clone(layer):
        if isinstance(layer, Swapped):
            cfg = {k: v for k, v in layer.get_config().items() if k not in layer.extra_config}
            return layer.plain_class.from_config(cfg)
        return layer.__class__.from_config(layer.get_config())

    plain = keras.models.clone_model(model, clone_function=clone)
    for layer in model.layers:
        if layer.weights:
            w = layer.export_weights() if isinstance(layer, Swapped) else layer.get_weights()
            plain.get_layer(layer.name).set_weights(w)
    return plain
