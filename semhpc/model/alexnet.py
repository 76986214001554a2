"""AlexNet as TF-Slim's `alexnet_v2` (one tower, no LRN): 5 conv + 3 FC, ReLU, dropout 0.5.

At its default 224x224 input the last pool is 5x5x256 and the model has 50,303,912 parameters
with 1000 classes, the ~50.3M of docs/background.md: Models (De Nobili 2017, Table 2.1), and 46,247,882 with 10 classes.
The FC layers are Dense (Slim writes fc6 as a 5x5 VALID conv: the same weights), so their size
follows the input: at 227 px the last pool is 6x6 and fc6 grows to 37.7M weights (57.7M in all).
The smallest input is 67 px (the last pool needs a 3x3 map).

Names: `conv1/conv`, `conv1/relu`, `pool1`, ..., `fc6/dense`, `fc6/relu`, `fc6/dropout`,
`fc7/...`, `predictions`. `conv_relu` and `fully_connected_head` are shared with VGG.
"""

from __future__ import annotations

import tensorflow as tf

layers = tf.keras.layers


def conv_relu(x, filters: int, kernel: int, name: str, strides: int = 1, padding: str = "same"):
    """Conv with bias (no BN in these nets) + ReLU, named `{name}/conv`, `{name}/relu`."""
    x = layers.Conv2D(filters, kernel, strides=strides, padding=padding, name=name + "/conv")(x)
    return layers.Activation("relu", name=name + "/relu")(x)


def fully_connected_head(x, num_classes: int, dropout: float, units: int = 4096):
    """Flatten, fc6 and fc7 (`units` each, ReLU, dropout), then the `predictions` logits."""
    x = layers.Flatten(name="fc6/flatten")(x)
    for name in ("fc6", "fc7"):
        x = layers.Dense(units, name=name + "/dense")(x)
        x = layers.Activation("relu", name=name + "/relu")(x)
        if dropout:
            x = layers.Dropout(dropout, name=name + "/dropout")(x)
    return layers.Dense(num_classes, name="predictions")(x)


def alexnet(num_classes: int = 10, input_size: int = 224, dropout: float = 0.5) -> tf.keras.Model:
    """AlexNet (alexnet_v2) returning logits."""
    inputs = layers.Input((input_size, input_size, 3), name="input")
    x = conv_relu(inputs, 64, 11, strides=4, padding="valid", name="conv1")
    x = layers.MaxPooling2D(3, strides=2, name="pool1")(x)
    x = conv_relu(x, 192, 5, name="conv2")
    x = layers.MaxPooling2D(3, strides=2, name="pool2")(x)
    x = conv_relu(x, 384, 3, name="conv3")
    x = conv_relu(x, 384, 3, name="conv4")
    x = conv_relu(x, 256, 3, name="conv5")
    x = layers.MaxPooling2D(3, strides=2, name="pool5")(x)
    logits = fully_connected_head(x, num_classes, dropout)
    return tf.keras.Model(inputs, logits, name="alexnet")
