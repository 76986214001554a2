"""Inception-v3 (Szegedy et al. 2016) with the graph of `tf.keras.applications.InceptionV3`.

The main path is the keras graph layer for layer (same weighted layers, weight shapes and
order), so keras ImageNet weight files load into it by topology (`load_weights` of the .h5
without `by_name`) and `set_weights(keras_model.get_weights())` gives the same outputs. Keras
leaves most layers unnamed (`conv2d_57`); here every name carries its block so per-layer
profiles group by module, which is why loading *by name* from a keras file does not apply.

Names: stem layers follow TF-Slim's numbering (`conv1a`, `conv2a`, `conv2b`, `pool3a`, `conv3b`,
`conv4a`, `pool5a`); modules are `mixed0`..`mixed10` as in keras, their layers
`mixed5_branch7x7dbl_3_conv` / `_bn` / (ReLU without suffix), like keras's `conv2d_bn`.
Module functions carry torchvision's names: A (35x35: mixed0-2), B (reduction: mixed3),
C (17x17: mixed4-7), D (reduction: mixed8), E (8x8: mixed9-10).

`aux_logits=True` adds TF-Slim's auxiliary classifier on mixed7 (`aux_logits/...`), trained
with weight 0.4 in the loss (the registry's `aux_loss_weight`) and dropped at inference.
"""

from __future__ import annotations

import tensorflow as tf

layers = tf.keras.layers


def conv2d_bn(x, filters: int, kernel_rows: int, kernel_cols: int, name: str, strides=1, padding="same"):
    """Conv (no bias) + BN (no scale: a ReLU follows) + ReLU, named `{name}_conv`, `{name}_bn`, `{name}`."""
    x = layers.Conv2D(filters, (kernel_rows, kernel_cols), strides=strides, padding=padding,
                      use_bias=False, name=name + "_conv")(x)
    x = layers.BatchNormalization(scale=False, name=name + "_bn")(x)
    return layers.Activation("relu", name=name)(x)


def stem(x):
    """Five convs and two max pools: 299x299x3 -> 35x35x192."""
    x = conv2d_bn(x, 32, 3, 3, strides=2, padding="valid", name="conv1a")
    x = conv2d_bn(x, 32, 3, 3, padding="valid", name="conv2a")
    x = conv2d_bn(x, 64, 3, 3, name="conv2b")
    x = layers.MaxPooling2D(3, strides=2, name="pool3a")(x)
    x = conv2d_bn(x, 80, 1, 1, padding="valid", name="conv3b")
    x = conv2d_bn(x, 192, 3, 3, padding="valid", name="conv4a")
    return layers.MaxPooling2D(3, strides=2, name="pool5a")(x)


def pool_branch(x, filters: int, name: str):
    """3x3 average pool (stride 1) then a 1x1 conv: the pooling branch of modules A, C and E."""
    pooled = layers.AveragePooling2D(3, strides=1, padding="same", name=name + "_pool")(x)
    return conv2d_bn(pooled, filters, 1, 1, name=name + "_branch_pool")


def inception_a(x, pool_filters: int, name: str):
    """35x35 module: 1x1, 5x5, double 3x3 and pool branches."""
    branch1x1 = conv2d_bn(x, 64, 1, 1, name=name + "_branch1x1")
    branch5x5 = conv2d_bn(x, 48, 1, 1, name=name + "_branch5x5_1")
    branch5x5 = conv2d_bn(branch5x5, 64, 5, 5, name=name + "_branch5x5_2")
    branch3x3dbl = conv2d_bn(x, 64, 1, 1, name=name + "_branch3x3dbl_1")
    branch3x3dbl = conv2d_bn(branch3x3dbl, 96, 3, 3, name=name + "_branch3x3dbl_2")
    branch3x3dbl = conv2d_bn(branch3x3dbl, 96, 3, 3, name=name + "_branch3x3dbl_3")
    branch_pool = pool_branch(x, pool_filters, name)
    return layers.Concatenate(name=name)([branch1x1, branch5x5, branch3x3dbl, branch_pool])


def inception_b(x, name: str):
    """Reduction 35x35 -> 17x17: strided 3x3, strided double 3x3, max pool."""
    branch3x3 = conv2d_bn(x, 384, 3, 3, strides=2, padding="valid", name=name + "_branch3x3")
    branch3x3dbl = conv2d_bn(x, 64, 1, 1, name=name + "_branch3x3dbl_1")
    branch3x3dbl = conv2d_bn(branch3x3dbl, 96, 3, 3, name=name + "_branch3x3dbl_2")
    branch3x3dbl = conv2d_bn(branch3x3dbl, 96, 3, 3, strides=2, padding="valid",
                             name=name + "_branch3x3dbl_3")
    branch_pool = layers.MaxPooling2D(3, strides=2, name=name + "_pool")(x)
    return layers.Concatenate(name=name)([branch3x3, branch3x3dbl, branch_pool])


def inception_c(x, channels_7x7: int, name: str):
    """17x17 module with 7x7 convs factorised into 1x7 and 7x1 (`channels_7x7` inside the branches)."""
    branch1x1 = conv2d_bn(x, 192, 1, 1, name=name + "_branch1x1")
    branch7x7 = conv2d_bn(x, channels_7x7, 1, 1, name=name + "_branch7x7_1")
    branch7x7 = conv2d_bn(branch7x7, channels_7x7, 1, 7, name=name + "_branch7x7_2")
    branch7x7 = conv2d_bn(branch7x7, 192, 7, 1, name=name + "_branch7x7_3")
    branch7x7dbl = conv2d_bn(x, channels_7x7, 1, 1, name=name + "_branch7x7dbl_1")
    branch7x7dbl = conv2d_bn(branch7x7dbl, channels_7x7, 7, 1, name=name + "_branch7x7dbl_2")
    branch7x7dbl = conv2d_bn(branch7x7dbl, channels_7x7, 1, 7, name=name + "_branch7x7dbl_3")
    branch7x7dbl = conv2d_bn(branch7x7dbl, channels_7x7, 7, 1, name=name + "_branch7x7dbl_4")
    branch7x7dbl = conv2d_bn(branch7x7dbl, 192, 1, 7, name=name + "_branch7x7dbl_5")
    branch_pool = pool_branch(x, 192, name)
    return layers.Concatenate(name=name)([branch1x1, branch7x7, branch7x7dbl, branch_pool])


def inception_d(x, name: str):
    """Reduction 17x17 -> 8x8: strided 3x3, strided 7x7-then-3x3, max pool."""
    branch3x3 = conv2d_bn(x, 192, 1, 1, name=name + "_branch3x3_1")
    branch3x3 = conv2d_bn(branch3x3, 320, 3, 3, strides=2, padding="valid", name=name + "_branch3x3_2")
    branch7x7x3 = conv2d_bn(x, 192, 1, 1, name=name + "_branch7x7x3_1")
    branch7x7x3 = conv2d_bn(branch7x7x3, 192, 1, 7, name=name + "_branch7x7x3_2")
    branch7x7x3 = conv2d_bn(branch7x7x3, 192, 7, 1, name=name + "_branch7x7x3_3")
    branch7x7x3 = conv2d_bn(branch7x7x3, 192, 3, 3, strides=2, padding="valid",
                            name=name + "_branch7x7x3_4")
    branch_pool = layers.MaxPooling2D(3, strides=2, name=name + "_pool")(x)
    return layers.Concatenate(name=name)([branch3x3, branch7x7x3, branch_pool])


def split_1x3_3x1(x, name: str, filters: int = 384):
    """Module E's widening (Inception-v4's C too): parallel 1x3 and 3x1 convs, concatenated."""
    branch1x3 = conv2d_bn(x, filters, 1, 3, name=name + "a")
    branch3x1 = conv2d_bn(x, filters, 3, 1, name=name + "b")
    return layers.Concatenate(name=name + "_concat")([branch1x3, branch3x1])


def inception_e(x, name: str):
    """8x8 module whose 3x3 branches end in parallel 1x3 / 3x1 convs."""
    branch1x1 = conv2d_bn(x, 320, 1, 1, name=name + "_branch1x1")
    branch3x3 = conv2d_bn(x, 384, 1, 1, name=name + "_branch3x3_1")
    branch3x3 = split_1x3_3x1(branch3x3, name=name + "_branch3x3_2")
    branch3x3dbl = conv2d_bn(x, 448, 1, 1, name=name + "_branch3x3dbl_1")
    branch3x3dbl = conv2d_bn(branch3x3dbl, 384, 3, 3, name=name + "_branch3x3dbl_2")
    branch3x3dbl = split_1x3_3x1(branch3x3dbl, name=name + "_branch3x3dbl_3")
    branch_pool = pool_branch(x, 192, name)
    return layers.Concatenate(name=name)([branch1x1, branch3x3, branch3x3dbl, branch_pool])


def auxiliary_head(x, num_classes: int, name: str = "aux_logits"):
    """TF-Slim's auxiliary classifier: 5x5/3 avg pool, 1x1 conv 128, 5x5 conv 768, FC.

    As in TF-Slim, the kernels shrink to the feature map on small inputs (mixed7 is 17x17 at
    299 px but 3x3 at 75 px), so the head works at any size the main path accepts.
    """
    x = layers.AveragePooling2D(min(5, x.shape[1]), strides=3, name=name + "/pool")(x)
    x = conv2d_bn(x, 128, 1, 1, name=name + "/conv1")
    kernel = min(5, x.shape[1])
    x = conv2d_bn(x, 768, kernel, kernel, padding="valid", name=name + "/conv2")
    x = layers.Flatten(name=name + "/flatten")(x)
    return layers.Dense(num_classes, name=name + "/predictions")(x)


def inception_v3(num_classes: int = 10, input_size: int = 299, dropout: float = 0.0,
                 aux_logits: bool = False) -> tf.keras.Model:
    """Inception-v3 returning logits, or `[logits, aux_logits]` when `aux_logits`.

    `dropout` > 0 adds a `dropout` layer before `predictions` (TF-Slim used 0.2; keras none).
    """
    inputs = layers.Input((input_size, input_size, 3), name="input")
    x = stem(inputs)
    for i, pool_filters in enumerate((32, 64, 64)):
        x = inception_a(x, pool_filters, name=f"mixed{i}")
    x = inception_b(x, name="mixed3")
    for i, channels_7x7 in enumerate((128, 160, 160, 192)):
        x = inception_c(x, channels_7x7, name=f"mixed{4 + i}")
    mixed7 = x
    x = inception_d(x, name="mixed8")
    for i in range(2):
        x = inception_e(x, name=f"mixed{9 + i}")
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if dropout:
        x = layers.Dropout(dropout, name="dropout")(x)
    logits = layers.Dense(num_classes, name="predictions")(x)
    outputs = [logits, auxiliary_head(mixed7, num_classes)] if aux_logits else logits
    return tf.keras.Model(inputs, outputs, name="inception_v3")
