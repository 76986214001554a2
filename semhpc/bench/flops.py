"""How close training gets to the machine's arithmetic peak.

Model FLOPs count the multiply-adds of convolutions and fully connected layers (2 FLOPs each),
the usual convention; batch norm, activations and pooling are a few percent and left out.
Training costs about 3x the forward pass (the backward pass computes two products per layer:
gradients of the inputs and of the weights), so achieved FLOP/s = 3 x forward FLOPs x images/sec.

The reference peak is what TensorFlow itself reaches on a large matrix product on the same cores
(`matmul_flops`), not the datasheet number: it is the ceiling a convolution network can
realistically approach on this CPU.
"""

from __future__ import annotations

import time

import tensorflow as tf


def layer_flops(layer) -> int:
    """Forward FLOPs of one image through `layer` (0 for layers without multiply-adds)."""
    if isinstance(layer, tf.keras.layers.DepthwiseConv2D):
        kernel_h, kernel_w, channels, multiplier = layer.depthwise_kernel.shape
        return 2 * kernel_h * kernel_w * channels * multiplier * _spatial(layer)
    if isinstance(layer, tf.keras.layers.Conv2D):
        kernel_h, kernel_w, in_per_group, filters = layer.kernel.shape
        return 2 * kernel_h * kernel_w * in_per_group * filters * _spatial(layer)
    if isinstance(layer, tf.keras.layers.Dense):
        inputs, units = layer.kernel.shape
        return 2 * inputs * units
    return 0


def _spatial(layer) -> int:
    """Output positions of a 2-D convolution, whatever its data format."""
    shape = layer.output_shape[1:]
    return shape[0] * shape[1] if layer.data_format == "channels_last" else shape[1] * shape[2]


def model_flops(model: tf.keras.Model) -> int:
    """Forward FLOPs per image of a (functional, unnested) Keras model."""
    return sum(layer_flops(layer) for layer in model.layers)


def matmul_flops(size: int = 2048, dtype: str = "float32", seconds: float = 3.0) -> float:
    """FLOP/s of repeated [size x size] @ [size x size] products in `dtype` with this process's threads."""
    generator = tf.random.Generator.from_seed(0)
    a = tf.cast(generator.normal([size, size]), dtype)
    b = tf.cast(generator.normal([size, size]), dtype)
    product = tf.function(lambda: tf.reduce_sum(tf.cast(tf.linalg.matmul(a, b), tf.float32)))
    product().numpy()  # compile and warm the kernels
    runs, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        product().numpy()
        runs += 1
    return 2 * size ** 3 * runs / (time.perf_counter() - started)
