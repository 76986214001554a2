"""VGG-11 (configuration A of Simonyan & Zisserman; TF-Slim `vgg_a`), used in the profiling study.

Eight 3x3 convs in five stages, each stage closed by a 2x2 max pool, then fc6, fc7 (4096, ReLU,
dropout 0.5) and the logits: 11 weighted layers. As in AlexNet the FC layers are Dense, so the
parameter count follows the input: 128.8M at 224 px with 10 classes (7x7x512 into fc6), far less
at the 32 px minimum (1x1x512), which keeps per-layer profiling tests cheap.

Names: `conv3_2/conv`, `conv3_2/relu`, `pool3`, `fc6/dense`, ..., `predictions`.
"""

from __future__ import annotations

import tensorflow as tf

from semhpc.model.alexnet import conv_relu, fully_connected_head

layers = tf.keras.layers

# (filters, convs) per stage: configuration A.
VGG11_STAGES = ((64, 1), (128, 1), (256, 2), (512, 2), (512, 2))


def vgg11(num_classes: int = 10, input_size: int = 224, dropout: float = 0.5) -> tf.keras.Model:
    """VGG-11 returning logits."""
    inputs = layers.Input((input_size, input_size, 3), name="input")
    x = inputs
    for stage, (filters, convs) in enumerate(VGG11_STAGES, start=1):
        for i in range(1, convs + 1):
            x = conv_relu(x, filters, 3, name=f"conv{stage}_{i}")
        x = layers.MaxPooling2D(2, strides=2, name=f"pool{stage}")(x)
    logits = fully_connected_head(x, num_classes, dropout)
    return tf.keras.Model(inputs, logits, name="vgg11")
