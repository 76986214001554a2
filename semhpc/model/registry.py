"""The model registry: every architecture semhpc can train, by name, with what the pipeline needs.

A `ModelSpec` tells the trainer how to build a model (`build`), how to scale its inputs
(`preprocess`), which layers form the classifier head(s) that transfer learning re-initialises
(`logits_scopes`) and how much the auxiliary loss weighs (`aux_loss_weight`). `layer_block`
maps a layer name to its block so the per-layer profiler can group times.

To add a model: write its builder (`builder(num_classes=, input_size=, dropout=)` returning
logits, layer names prefixed by their block) and add a `ModelSpec` to `MODELS`.
"""

from __future__ import annotations

import difflib
import functools
import re
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import tensorflow as tf

from semhpc.model import densenet
from semhpc.model.alexnet import alexnet
from semhpc.model.inception_resnet_v2 import inception_resnet_v2
from semhpc.model.inception_v3 import inception_v3
from semhpc.model.inception_v4 import inception_v4
from semhpc.model.vgg import vgg11
from semhpc.runtime.precision import bfloat16_model
from semhpc.utils.errors import SemhpcError

# ImageNet statistics of images in [0, 1]: keras "torch" mode, which DenseNet weights expect.
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)

# Input scalings for images in [0, 1], named after keras `preprocess_input` modes.
PREPROCESSING: dict[str, Callable[[tf.Tensor], tf.Tensor]] = {
    "torch": lambda images: (images - _IMAGENET_MEAN) / _IMAGENET_STD,  # per-channel standardised
    "tf": lambda images: images * 2.0 - 1.0,  # [-1, 1]
}


@dataclass(frozen=True)
class ModelSpec:
    """One registered architecture.

    logits_scopes: layer-name prefixes of the classifier head(s): transfer learning restores
      every other layer from a checkpoint and, in feature extraction, trains only these.
    aux_loss_weight: weight of the auxiliary logits' loss (`build(..., aux_logits=True)`);
      None when the model has no auxiliary head.
    thesis_classes: the classifier size on which the thesis (De Nobili 2017, Table 2.1) counted
      parameters: its Inception nets are TF-Slim's ImageNet graphs (1001 classes, auxiliary head
      included), AlexNet the 1000-class alexnet_v2, the DenseNets its 10-class SEM models.
    """

    name: str
    builder: Callable[..., tf.keras.Model]
    default_input_size: int
    min_input_size: int
    preprocessing: str  # a key of PREPROCESSING
    description: str
    logits_scopes: tuple[str, ...] = ("predictions",)
    aux_loss_weight: Optional[float] = None
    thesis_classes: int = 10


def _densenet_spec(variant: str) -> ModelSpec:
    growth_rate, blocks = densenet.DENSENET_VARIANTS[variant]
    return ModelSpec(
        name=variant,
        builder=functools.partial(densenet.build_variant, variant),
        default_input_size=224,
        min_input_size=4 * 2 ** (len(blocks) - 1),  # the stem divides by 4, each transition by 2
        preprocessing="torch",  # keras DenseNet ImageNet weights
        description=f"DenseNet-BC k={growth_rate}, blocks {'-'.join(map(str, blocks))}",
    )


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        *(_densenet_spec(variant) for variant in densenet.DENSENET_VARIANTS),
        # The Inception nets: 75 px is the smallest input whose last reduction leaves a 1x1 map.
        ModelSpec("inception_v3", inception_v3, default_input_size=299, min_input_size=75,
                  preprocessing="tf", description="Inception-v3 (keras graph), optional aux head",
                  logits_scopes=("predictions", "aux_logits"), aux_loss_weight=0.4, thesis_classes=1001),
        ModelSpec("inception_v4", inception_v4, default_input_size=299, min_input_size=75,
                  preprocessing="tf", description="Inception-v4 (TF-Slim graph), optional aux head",
                  logits_scopes=("predictions", "aux_logits"), aux_loss_weight=0.4, thesis_classes=1001),
        ModelSpec("inception_resnet_v2", inception_resnet_v2, default_input_size=299, min_input_size=75,
                  preprocessing="tf", description="Inception-ResNet-v2 (keras graph), optional aux head",
                  logits_scopes=("predictions", "aux_logits"), aux_loss_weight=0.4, thesis_classes=1001),
        # No pretrained weights: "tf" scaling just centres the input of these BN-free nets.
        ModelSpec("alexnet", alexnet, default_input_size=224, min_input_size=67, preprocessing="tf",
                  description="AlexNet (TF-Slim alexnet_v2), 5 conv + 3 FC", thesis_classes=1000),
        ModelSpec("vgg11", vgg11, default_input_size=224, min_input_size=32, preprocessing="tf",
                  description="VGG-11 (configuration A), 8 conv + 3 FC"),
    )
}


def get_spec(name: str) -> ModelSpec:
    """The spec of model `name`; an unknown name raises SemhpcError suggesting the closest ones."""
    if name in MODELS:
        return MODELS[name]
    closest = difflib.get_close_matches(str(name).lower(), MODELS, n=3, cutoff=0.7)
    hint = f"closest: {', '.join(closest)}" if closest else f"valid: {', '.join(MODELS)}"
    raise SemhpcError(f"unknown model '{name}' ({hint}; see `semhpc models`)")


def build(name: str, num_classes: int = 10, input_size: Optional[int] = None, aux_logits: bool = False,
          dropout: Optional[float] = None) -> tf.keras.Model:
    """Model `name` on (S, S, 3) float inputs, returning logits (`[logits, aux_logits]` with aux_logits).

    input_size: S, default the spec's; dropout: None keeps the model's default.
    """
    spec = get_spec(name)
    size = input_size or spec.default_input_size
    if size < spec.min_input_size:
        raise SemhpcError(f"image size {size} is too small for model {name} (minimum {spec.min_input_size})")
    options = {}
    if dropout is not None:
        options["dropout"] = dropout
    if aux_logits:
        if spec.aux_loss_weight is None:
            with_aux = [other.name for other in MODELS.values() if other.aux_loss_weight is not None]
            raise SemhpcError(f"model {name} has no auxiliary logits head (only {', '.join(with_aux)})")
        options["aux_logits"] = True
    # Under mixed_bfloat16 some BatchNormalization layers stay float32 (semhpc.runtime.precision).
    return bfloat16_model(spec.builder(num_classes=num_classes, input_size=size, **options))


def preprocess(images, spec: ModelSpec) -> tf.Tensor:
    """Map float images in [0, 1] (NHWC or HWC, 3 channels) to the range `spec`'s model expects."""
    return PREPROCESSING[spec.preprocessing](tf.cast(images, tf.float32))


def count_layers(model: tf.keras.Model) -> int:
    """Conv + FC layers: the number in names like DenseNet-121 or VGG-11."""
    return sum(isinstance(layer, (tf.keras.layers.Conv2D, tf.keras.layers.Dense)) for layer in model.layers)


def describe(name: str, num_classes: int = 10, input_size: Optional[int] = None) -> dict:
    """`name`, `input_size`, `params` and `layers` of a model, without allocating its weights."""
    size = input_size or get_spec(name).default_input_size
    # In a throwaway graph the variables are only declared: VGG-11's 129M weights cost nothing.
    with tf.Graph().as_default():
        model = build(name, num_classes=num_classes, input_size=size)
        return {"name": name, "input_size": size, "params": int(model.count_params()),
                "layers": count_layers(model)}


def thesis_basis(name: str, input_size: Optional[int] = None) -> dict:
    """Parameters of `name` on the basis of the thesis' Table 2.1 (De Nobili 2017).

    The classifier has `thesis_classes` outputs and the auxiliary head is included when the model
    has one. `trainable` counts "weights and biases", the table's caption, i.e. without BN moving
    statistics; `params` adds them (keras `count_params`). Inception-v3: 27,145,970 trainable,
    27,182,194 in all, for the table's ~27.1M.
    """
    spec = get_spec(name)
    aux = spec.aux_loss_weight is not None
    size = input_size or spec.default_input_size
    with tf.Graph().as_default():
        model = build(name, num_classes=spec.thesis_classes, input_size=size, aux_logits=aux)
        trainable = sum(int(np.prod(weight.shape)) for weight in model.trainable_weights)
        return {"classes": spec.thesis_classes, "aux_logits": aux, "input_size": size,
                "trainable": trainable, "params": int(model.count_params())}


def count_params(name: str, num_classes: int = 10, input_size: Optional[int] = None) -> int:
    """Parameters (trainable and BN statistics, like keras `count_params`) of model `name`."""
    return describe(name, num_classes, input_size)["params"]


# A layer's block is the first match of: `conv3_block4` (DenseNet dense layer), `mixed5`,
# `mixed6b` (Inception module), `block17_3` (Inception-ResNet block), `conv1`, `pool2`,
# `conv2b`, `pool3a` (stems, transitions, AlexNet/VGG stages); names with a "/" (`conv1/conv`,
# `fc6/dense`, `conv3_1/relu`, `aux_logits/conv1_bn`) belong to the part before the first "/".
# Head layers (`bn`, `avg_pool`, `predictions`) are their own block.
_BLOCK = re.compile(r"^(conv\d+_block\d+|mixed\d+[a-z]?|block\d+_\d+|(?:conv|pool)\d+[a-z]?)(?=_|$)")


def layer_block(layer_name: str) -> str:
    """The block (name scope) a layer belongs to, e.g. `conv3_block4_2_conv` -> `conv3_block4`."""
    if "/" in layer_name:
        return layer_name.split("/", 1)[0]
    match = _BLOCK.match(layer_name)
    return match.group(1) if match else layer_name
