"""DenseNet-BC (Huang et al. 2017) in the style of `keras.applications.densenet`.

One generic builder, `densenet`, covers every variant: each dense layer is a bottleneck 1x1
conv (`bottleneck_width * k` filters) then a 3x3 conv adding `k` (the growth rate) feature maps;
each transition halves the channels (`compression`) and the spatial size. Layer names are the
keras ones (`conv1/conv`, `conv2_block1_1_conv`, `pool2_conv`, `bn`, `predictions`), so
DenseNet-121 is the very graph of `tf.keras.applications.DenseNet121` and loads its ImageNet
weight files both by topology and by name, and a per-layer profiler can group ops by block.

Layer count convention (docs/background.md: Models): 1 stem conv + 2 convs per dense layer + 1 conv per
transition + 1 FC = 1 + 2 * sum(blocks) + (len(blocks) - 1) + 1. All variants keep the keras
stem (7x7/2 conv with 64 filters, 3x3/2 max pool): it is the one stem conv of the convention,
it makes the variants share DenseNet-121's first weights, and 64 filters (not 2k) is what puts
DenseNet-28 at the ~2M parameters the thesis reports (2k = 112 filters would give 2.21M, +10%).

| name        |  k | blocks         | 2*dense + transitions + stem + FC | params, 10 classes | docs/background.md: Models |
| ----------- | -- | -------------- | --------------------------------- | ------------------ | ------------ |
| densenet121 | 32 | (6, 12, 24, 16) | 116 + 3 + 1 + 1 = 121            | 7,047,754          | ~6.9M        |
| densenet91  | 32 | (6, 12, 12, 13) |  86 + 3 + 1 + 1 =  91            | 4,159,882          | ~4M          |
| densenet40  | 48 | (6, 6, 6)       |  36 + 2 + 1 + 1 =  40            | 2,675,066          | ~2.7M        |
| densenet28  | 56 | (2, 6, 4)       |  24 + 2 + 1 + 1 =  28            | 2,112,866          | ~2M          |

The thesis gives only k and the parameter count for DenseNet-91 and -40, so their blocks are
chosen here: 91 layers with four blocks need sum(blocks) = 43; (6, 12, 12, 13) keeps
DenseNet-121's first two blocks and the first 12 layers of its third, so those layers keep
DenseNet-121's names and weight shapes (partial ImageNet transfer by name). 40 layers with three
blocks need sum(blocks) = 18; (6, 6, 6) uses equal blocks like DenseNet-BC for CIFAR.
"""

from __future__ import annotations

import tensorflow as tf

layers = tf.keras.layers

# name -> (growth rate k, dense layers per block); see the table in the module docstring.
DENSENET_VARIANTS = {
    "densenet28": (56, (2, 6, 4)),
    "densenet40": (48, (6, 6, 6)),
    "densenet91": (32, (6, 12, 12, 13)),
    "densenet121": (32, (6, 12, 24, 16)),
}

_BN_EPSILON = 1.001e-5  # the keras value: ImageNet weights were trained with it


def conv_block(x, growth_rate: int, bottleneck_width: int, name: str):
    """One dense layer: BN-ReLU-1x1 conv (bottleneck), BN-ReLU-3x3 conv, concatenated to `x`."""
    y = layers.BatchNormalization(epsilon=_BN_EPSILON, name=name + "_0_bn")(x)
    y = layers.Activation("relu", name=name + "_0_relu")(y)
    y = layers.Conv2D(bottleneck_width * growth_rate, 1, use_bias=False, name=name + "_1_conv")(y)
    y = layers.BatchNormalization(epsilon=_BN_EPSILON, name=name + "_1_bn")(y)
    y = layers.Activation("relu", name=name + "_1_relu")(y)
    y = layers.Conv2D(growth_rate, 3, padding="same", use_bias=False, name=name + "_2_conv")(y)
    return layers.Concatenate(name=name + "_concat")([x, y])


def dense_block(x, num_layers: int, growth_rate: int, bottleneck_width: int, name: str):
    """`num_layers` dense layers named `{name}_block1` ... `{name}_block{num_layers}`."""
    for i in range(num_layers):
        x = conv_block(x, growth_rate, bottleneck_width, name=f"{name}_block{i + 1}")
    return x


def transition_block(x, compression: float, name: str):
    """BN-ReLU-1x1 conv keeping `compression` of the channels, then 2x2 average pooling."""
    x = layers.BatchNormalization(epsilon=_BN_EPSILON, name=name + "_bn")(x)
    x = layers.Activation("relu", name=name + "_relu")(x)
    x = layers.Conv2D(int(x.shape[-1] * compression), 1, use_bias=False, name=name + "_conv")(x)
    return layers.AveragePooling2D(2, strides=2, name=name + "_pool")(x)


def stem(x, filters: int):
    """The keras stem: 7x7/2 conv (`conv1`) and 3x3/2 max pool (`pool1`): 4x smaller maps."""
    x = layers.ZeroPadding2D(3, name="conv1/pad")(x)
    x = layers.Conv2D(filters, 7, strides=2, use_bias=False, name="conv1/conv")(x)
    x = layers.BatchNormalization(epsilon=_BN_EPSILON, name="conv1/bn")(x)
    x = layers.Activation("relu", name="conv1/relu")(x)
    x = layers.ZeroPadding2D(1, name="pool1/pad")(x)
    return layers.MaxPooling2D(3, strides=2, name="pool1")(x)


def densenet(
    blocks,
    growth_rate: int,
    num_classes: int = 10,
    input_size: int = 224,
    compression: float = 0.5,
    bottleneck_width: int = 4,
    stem_filters: int = 64,
    dropout: float = 0.0,
    name: str = "densenet",
) -> tf.keras.Model:
    """A DenseNet-BC returning logits; dense block i is `conv{i+2}`, the transition after it `pool{i+2}`.

    `dropout` > 0 adds a `dropout` layer before `predictions` (keras has none; neither do the
    default variants, so DenseNet-121 stays identical to keras).
    """
    inputs = layers.Input((input_size, input_size, 3), name="input")
    x = stem(inputs, stem_filters)
    for i, num_layers in enumerate(blocks):
        x = dense_block(x, num_layers, growth_rate, bottleneck_width, name=f"conv{i + 2}")
        if i < len(blocks) - 1:
            x = transition_block(x, compression, name=f"pool{i + 2}")
    x = layers.BatchNormalization(epsilon=_BN_EPSILON, name="bn")(x)
    x = layers.Activation("relu", name="relu")(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if dropout:
        x = layers.Dropout(dropout, name="dropout")(x)
    logits = layers.Dense(num_classes, name="predictions")(x)
    return tf.keras.Model(inputs, logits, name=name)


def build_variant(variant: str, num_classes: int = 10, input_size: int = 224, dropout: float = 0.0):
    """One of `DENSENET_VARIANTS` by name (the model is named after it, e.g. `densenet121`)."""
    growth_rate, blocks = DENSENET_VARIANTS[variant]
    return densenet(blocks, growth_rate, num_classes=num_classes, input_size=input_size,
                    dropout=dropout, name=variant)
