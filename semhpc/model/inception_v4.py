"""Inception-v4 (Szegedy et al. 2017, "Inception-v4, Inception-ResNet and the Impact of Residual
Connections on Learning") with the graph of TF-Slim's `inception_v4`, which the thesis trained.

Keras has no Inception-v4; the building blocks are the ones of `inception_v3.py` (`conv2d_bn`:
conv without bias, BN without scale, ReLU) and the names follow TF-Slim's scopes in the same
style: stem convs `conv1a`, `conv2a`, `conv2b`, modules `mixed3a` .. `mixed7d`, their layers
`mixed6c_branch1_2_conv` / `_bn` / (ReLU without suffix), so a per-layer profile groups by module.
Module functions carry the paper's names: stem (299x299x3 -> 35x35x384), 4 x Inception-A
(mixed5b-5e), Reduction-A (mixed6a), 7 x Inception-B (mixed6b-6h), Reduction-B (mixed7a),
3 x Inception-C (mixed7b-7d).

`aux_logits=True` adds TF-Slim's auxiliary classifier on mixed6h (`aux_logits/...`, the head of
`inception_v3.auxiliary_head`). Parameters (keras count, BN moving statistics included):
42,711,400 with 1000 classes and no auxiliary head (the published ~42.7M), 46,074,066 with
TF-Slim's 1001 classes and the auxiliary head.
"""

from __future__ import annotations

import tensorflow as tf

from semhpc.model.inception_v3 import (
    auxiliary_head,
    conv2d_bn,
    pool_branch,
    split_1x3_3x1,
)

layers = tf.keras.layers


def stem(x):
    """Three convs, then three two-branch modules: 299x299x3 -> 35x35x384."""
    x = conv2d_bn(x, 32, 3, 3, strides=2, padding="valid", name="conv1a")
    x = conv2d_bn(x, 32, 3, 3, padding="valid", name="conv2a")
    x = conv2d_bn(x, 64, 3, 3, name="conv2b")

    pooled = layers.MaxPooling2D(3, strides=2, name="mixed3a_pool")(x)
    strided = conv2d_bn(x, 96, 3, 3, strides=2, padding="valid", name="mixed3a_branch1")
    x = layers.Concatenate(name="mixed3a")([pooled, strided])

    branch0 = conv2d_bn(x, 64, 1, 1, name="mixed4a_branch0_1")
    branch0 = conv2d_bn(branch0, 96, 3, 3, padding="valid", name="mixed4a_branch0_2")
    branch1 = conv2d_bn(x, 64, 1, 1, name="mixed4a_branch1_1")
    branch1 = conv2d_bn(branch1, 64, 1, 7, name="mixed4a_branch1_2")
    branch1 = conv2d_bn(branch1, 64, 7, 1, name="mixed4a_branch1_3")
    branch1 = conv2d_bn(branch1, 96, 3, 3, padding="valid", name="mixed4a_branch1_4")
    x = layers.Concatenate(name="mixed4a")([branch0, branch1])

    strided = conv2d_bn(x, 192, 3, 3, strides=2, padding="valid", name="mixed5a_branch0")
    pooled = layers.MaxPooling2D(3, strides=2, name="mixed5a_pool")(x)
    return layers.Concatenate(name="mixed5a")([strided, pooled])


def inception_a(x, name: str):
    """35x35 module: 1x1, 3x3, double 3x3 and pool branches, 96 filters each."""
    branch0 = conv2d_bn(x, 96, 1, 1, name=name + "_branch0")
    branch1 = conv2d_bn(x, 64, 1, 1, name=name + "_branch1_1")
    branch1 = conv2d_bn(branch1, 96, 3, 3, name=name + "_branch1_2")
    branch2 = conv2d_bn(x, 64, 1, 1, name=name + "_branch2_1")
    branch2 = conv2d_bn(branch2, 96, 3, 3, name=name + "_branch2_2")
    branch2 = conv2d_bn(branch2, 96, 3, 3, name=name + "_branch2_3")
    branch3 = pool_branch(x, 96, name)
    return layers.Concatenate(name=name)([branch0, branch1, branch2, branch3])


def reduction_a(x, name: str):
    """35x35 -> 17x17: strided 3x3, 1x1-3x3-strided 3x3, max pool (1024 channels out)."""
    branch0 = conv2d_bn(x, 384, 3, 3, strides=2, padding="valid", name=name + "_branch0")
    branch1 = conv2d_bn(x, 192, 1, 1, name=name + "_branch1_1")
    branch1 = conv2d_bn(branch1, 224, 3, 3, name=name + "_branch1_2")
    branch1 = conv2d_bn(branch1, 256, 3, 3, strides=2, padding="valid", name=name + "_branch1_3")
    branch2 = layers.MaxPooling2D(3, strides=2, name=name + "_pool")(x)
    return layers.Concatenate(name=name)([branch0, branch1, branch2])


def inception_b(x, name: str):
    """17x17 module with 7x7 convs factorised into 1x7 and 7x1."""
    branch0 = conv2d_bn(x, 384, 1, 1, name=name + "_branch0")
    branch1 = conv2d_bn(x, 192, 1, 1, name=name + "_branch1_1")
    branch1 = conv2d_bn(branch1, 224, 1, 7, name=name + "_branch1_2")
    branch1 = conv2d_bn(branch1, 256, 7, 1, name=name + "_branch1_3")
    branch2 = conv2d_bn(x, 192, 1, 1, name=name + "_branch2_1")
    branch2 = conv2d_bn(branch2, 192, 7, 1, name=name + "_branch2_2")
    branch2 = conv2d_bn(branch2, 224, 1, 7, name=name + "_branch2_3")
    branch2 = conv2d_bn(branch2, 224, 7, 1, name=name + "_branch2_4")
    branch2 = conv2d_bn(branch2, 256, 1, 7, name=name + "_branch2_5")
    branch3 = pool_branch(x, 128, name)
    return layers.Concatenate(name=name)([branch0, branch1, branch2, branch3])


def reduction_b(x, name: str):
    """17x17 -> 8x8: 1x1-strided 3x3, 1x1-1x7-7x1-strided 3x3, max pool (1536 channels out)."""
    branch0 = conv2d_bn(x, 192, 1, 1, name=name + "_branch0_1")
    branch0 = conv2d_bn(branch0, 192, 3, 3, strides=2, padding="valid", name=name + "_branch0_2")
    branch1 = conv2d_bn(x, 256, 1, 1, name=name + "_branch1_1")
    branch1 = conv2d_bn(branch1, 256, 1, 7, name=name + "_branch1_2")
    branch1 = conv2d_bn(branch1, 320, 7, 1, name=name + "_branch1_3")
    branch1 = conv2d_bn(branch1, 320, 3, 3, strides=2, padding="valid", name=name + "_branch1_4")
    branch2 = layers.MaxPooling2D(3, strides=2, name=name + "_pool")(x)
    return layers.Concatenate(name=name)([branch0, branch1, branch2])


def inception_c(x, name: str):
    """8x8 module whose 3x3 branches end in parallel 1x3 / 3x1 convs."""
    branch0 = conv2d_bn(x, 256, 1, 1, name=name + "_branch0")
    branch1 = conv2d_bn(x, 384, 1, 1, name=name + "_branch1_1")
    branch1 = split_1x3_3x1(branch1, name=name + "_branch1_2", filters=256)
    branch2 = conv2d_bn(x, 384, 1, 1, name=name + "_branch2_1")
    branch2 = conv2d_bn(branch2, 448, 3, 1, name=name + "_branch2_2")
    branch2 = conv2d_bn(branch2, 512, 1, 3, name=name + "_branch2_3")
    branch2 = split_1x3_3x1(branch2, name=name + "_branch2_4", filters=256)
    branch3 = pool_branch(x, 256, name)
    return layers.Concatenate(name=name)([branch0, branch1, branch2, branch3])


def inception_v4(num_classes: int = 10, input_size: int = 299, dropout: float = 0.0,
                 aux_logits: bool = False) -> tf.keras.Model:
    """Inception-v4 returning logits, or `[logits, aux_logits]` when `aux_logits`.

    `dropout` > 0 adds a `dropout` layer before `predictions` (TF-Slim used 0.2).
    """
    inputs = layers.Input((input_size, input_size, 3), name="input")
    x = stem(inputs)
    for letter in "bcde":
        x = inception_a(x, name=f"mixed5{letter}")
    x = reduction_a(x, name="mixed6a")
    for letter in "bcdefgh":
        x = inception_b(x, name=f"mixed6{letter}")
    mixed6h = x
    x = reduction_b(x, name="mixed7a")
    for letter in "bcd":
        x = inception_c(x, name=f"mixed7{letter}")
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if dropout:
        x = layers.Dropout(dropout, name="dropout")(x)
    logits = layers.Dense(num_classes, name="predictions")(x)
    outputs = [logits, auxiliary_head(mixed6h, num_classes)] if aux_logits else logits
    return tf.keras.Model(inputs, outputs, name="inception_v4")
