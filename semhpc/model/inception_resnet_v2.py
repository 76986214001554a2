"""Inception-ResNet-v2 (Szegedy et al. 2017) with the graph of `tf.keras.applications.InceptionResNetV2`.

As in `inception_v3.py`, the main path is the keras graph layer for layer (same weighted layers,
weight shapes and order), so keras ImageNet weight files load into it by topology and
`set_weights(keras_model.get_weights())` gives the same outputs; every layer name carries its
block (keras leaves the convs unnamed), so per-layer profiles group by module.

Names: the stem is Inception-v3's (`conv1a` .. `pool5a`); modules keep the keras names without
underscores in the TF-Slim part: `mixed5b`, `block35_1` .. `block35_10`, `mixed6a`,
`block17_1` .. `block17_20`, `mixed7a`, `block8_1` .. `block8_10`, `conv7b`. A residual block's
layers are `block17_3_branch1_2_conv` / `_bn`, its 1x1 projection `block17_3_conv` (with bias,
no BN), the scaled sum `block17_3` and its ReLU `block17_3_ac`. Keras adds the scaled residual in
a Lambda; here it is a `Rescaling` and an `Add`, which save and load without Python code.

`aux_logits=True` adds TF-Slim's auxiliary classifier on the 17x17 map after block17_20
(`aux_logits/...`, the head of `inception_v3.auxiliary_head`). Parameters: 55,873,736 with 1000
classes and no auxiliary head (keras's count, the published ~55.8M), 59,244,594 with TF-Slim's
1001 classes and the auxiliary head.
"""

from __future__ import annotations

import tensorflow as tf

from semhpc.model.inception_v3 import auxiliary_head, conv2d_bn
from semhpc.model.inception_v3 import stem as inception_v3_stem

layers = tf.keras.layers


def mixed_5b(x, name: str = "mixed5b"):
    """35x35x192 -> 35x35x320: 1x1, 5x5, double 3x3 and pool branches."""
    branch0 = conv2d_bn(x, 96, 1, 1, name=name + "_branch0")
    branch1 = conv2d_bn(x, 48, 1, 1, name=name + "_branch1_1")
    branch1 = conv2d_bn(branch1, 64, 5, 5, name=name + "_branch1_2")
    branch2 = conv2d_bn(x, 64, 1, 1, name=name + "_branch2_1")
    branch2 = conv2d_bn(branch2, 96, 3, 3, name=name + "_branch2_2")
    branch2 = conv2d_bn(branch2, 96, 3, 3, name=name + "_branch2_3")
    pooled = layers.AveragePooling2D(3, strides=1, padding="same", name=name + "_pool")(x)
    branch_pool = conv2d_bn(pooled, 64, 1, 1, name=name + "_branch_pool")
    return layers.Concatenate(name=name)([branch0, branch1, branch2, branch_pool])


def residual(x, branches: list, scale: float, name: str, activation: bool = True):
    """x + scale * (1x1 projection of the concatenated branches), then ReLU unless `activation` is False."""
    mixed = layers.Concatenate(name=name + "_mixed")(branches)
    up = layers.Conv2D(x.shape[-1], 1, use_bias=True, name=name + "_conv")(mixed)
    up = layers.Rescaling(scale, name=name + "_scale")(up)
    x = layers.Add(name=name)([x, up])
    return layers.Activation("relu", name=name + "_ac")(x) if activation else x


def block35(x, name: str, scale: float = 0.17):
    """Inception-ResNet-A (35x35): 1x1, 3x3 and double 3x3 branches."""
    branch0 = conv2d_bn(x, 32, 1, 1, name=name + "_branch0")
    branch1 = conv2d_bn(x, 32, 1, 1, name=name + "_branch1_1")
    branch1 = conv2d_bn(branch1, 32, 3, 3, name=name + "_branch1_2")
    branch2 = conv2d_bn(x, 32, 1, 1, name=name + "_branch2_1")
    branch2 = conv2d_bn(branch2, 48, 3, 3, name=name + "_branch2_2")
    branch2 = conv2d_bn(branch2, 64, 3, 3, name=name + "_branch2_3")
    return residual(x, [branch0, branch1, branch2], scale, name)


def block17(x, name: str, scale: float = 0.1):
    """Inception-ResNet-B (17x17): 1x1 and 1x7-7x1 branches."""
    branch0 = conv2d_bn(x, 192, 1, 1, name=name + "_branch0")
    branch1 = conv2d_bn(x, 128, 1, 1, name=name + "_branch1_1")
    branch1 = conv2d_bn(branch1, 160, 1, 7, name=name + "_branch1_2")
    branch1 = conv2d_bn(branch1, 192, 7, 1, name=name + "_branch1_3")
    return residual(x, [branch0, branch1], scale, name)


def block8(x, name: str, scale: float = 0.2, activation: bool = True):
    """Inception-ResNet-C (8x8): 1x1 and 1x3-3x1 branches."""
    branch0 = conv2d_bn(x, 192, 1, 1, name=name + "_branch0")
    branch1 = conv2d_bn(x, 192, 1, 1, name=name + "_branch1_1")
    branch1 = conv2d_bn(branch1, 224, 1, 3, name=name + "_branch1_2")
    branch1 = conv2d_bn(branch1, 256, 3, 1, name=name + "_branch1_3")
    return residual(x, [branch0, branch1], scale, name, activation)


def reduction_a(x, name: str = "mixed6a"):
    """Reduction 35x35 -> 17x17 (1088 channels out)."""
    branch0 = conv2d_bn(x, 384, 3, 3, strides=2, padding="valid", name=name + "_branch0")
    branch1 = conv2d_bn(x, 256, 1, 1, name=name + "_branch1_1")
    branch1 = conv2d_bn(branch1, 256, 3, 3, name=name + "_branch1_2")
    branch1 = conv2d_bn(branch1, 384, 3, 3, strides=2, padding="valid", name=name + "_branch1_3")
    branch_pool = layers.MaxPooling2D(3, strides=2, name=name + "_pool")(x)
    return layers.Concatenate(name=name)([branch0, branch1, branch_pool])


def reduction_b(x, name: str = "mixed7a"):
    """Reduction 17x17 -> 8x8 (2080 channels out)."""
    branch0 = conv2d_bn(x, 256, 1, 1, name=name + "_branch0_1")
    branch0 = conv2d_bn(branch0, 384, 3, 3, strides=2, padding="valid", name=name + "_branch0_2")
    branch1 = conv2d_bn(x, 256, 1, 1, name=name + "_branch1_1")
    branch1 = conv2d_bn(branch1, 288, 3, 3, strides=2, padding="valid", name=name + "_branch1_2")
    branch2 = conv2d_bn(x, 256, 1, 1, name=name + "_branch2_1")
    branch2 = conv2d_bn(branch2, 288, 3, 3, name=name + "_branch2_2")
    branch2 = conv2d_bn(branch2, 320, 3, 3, strides=2, padding="valid", name=name + "_branch2_3")
    branch_pool = layers.MaxPooling2D(3, strides=2, name=name + "_pool")(x)
    return layers.Concatenate(name=name)([branch0, branch1, branch2, branch_pool])


def inception_resnet_v2(num_classes: int = 10, input_size: int = 299, dropout: float = 0.0,
                        aux_logits: bool = False) -> tf.keras.Model:
    """Inception-ResNet-v2 returning logits, or `[logits, aux_logits]` when `aux_logits`.

    `dropout` > 0 adds a `dropout` layer before `predictions` (TF-Slim used 0.2; keras none).
    """
    inputs = layers.Input((input_size, input_size, 3), name="input")
    x = mixed_5b(inception_v3_stem(inputs))
    for i in range(1, 11):
        x = block35(x, name=f"block35_{i}")
    x = reduction_a(x)
    for i in range(1, 21):
        x = block17(x, name=f"block17_{i}")
    after_block17 = x
    x = reduction_b(x)
    for i in range(1, 10):
        x = block8(x, name=f"block8_{i}")
    x = block8(x, name="block8_10", scale=1.0, activation=False)
    x = conv2d_bn(x, 1536, 1, 1, name="conv7b")
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if dropout:
        x = layers.Dropout(dropout, name="dropout")(x)
    logits = layers.Dense(num_classes, name="predictions")(x)
    outputs = [logits, auxiliary_head(after_block17, num_classes)] if aux_logits else logits
    return tf.keras.Model(inputs, outputs, name="inception_resnet_v2")
