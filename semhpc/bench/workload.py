"""What `semhpc bench` and `semhpc profile` time: a registry model, one synthetic batch held in
memory, and the trainer's own setup and training step (runtime/recipe.py).

Using the trainer's setup and step (its loss, weight decay, Horovod gradient allreduce and optimizer)
means a benchmark figure is a training figure, not the figure of a simpler loop. Synthetic input
(docs/background.md: Scaling, the thesis' benchmark method) keeps the input pipeline out of the measurement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import tensorflow as tf

from semhpc.bench.data_format import check_data_format
from semhpc.data.categories import CATEGORIES
from semhpc.model import registry
from semhpc.runtime.precision import Precision
from semhpc.runtime.recipe import make_train_step, set_up_training

# The schedule only sets learning-rate values, which do not change timings; any epoch length does.
_SCHEDULE_STEPS_PER_EPOCH = 100


@dataclass
class Workload:
    model: tf.keras.Model
    optimizer: tf.keras.optimizers.Optimizer
    train_step: Callable  # (images, labels) -> (loss, correct): the trainer's step
    forward_step: Callable  # images -> logits, inference mode
    images: tf.Tensor  # one synthetic batch in the model's input range
    labels: tf.Tensor
    precision: Precision

    @property
    def batch_size(self) -> int:
        return int(self.images.shape[0])


def build_workload(cfg, data_format: str = "channels_last", world_size: int = 1) -> Workload:
    """The model of `cfg.model`, at `cfg.data.image_size`, trained per `cfg.train`, on synthetic data.

    Horovod must be initialised (the trainer's step allreduces through it).
    """
    check_data_format(data_format, bool(tf.config.list_physical_devices("GPU")))
    setup = set_up_training(cfg, len(CATEGORIES), _SCHEDULE_STEPS_PER_EPOCH, world_size,
                            prepare_model=channels_first if data_format == "channels_first" else None)
    train_step = make_train_step(setup, cfg.train, len(CATEGORIES), allreduce=world_size > 1)
    model = setup.model

    @tf.function
    def forward_step(images):
        outputs = model(images, training=False)
        return outputs[0] if isinstance(outputs, (list, tuple)) else outputs

    images, labels = synthetic_batch(cfg.train.batch_size, cfg.data.image_size, setup.spec, data_format,
                                     cfg.train.seed)
    return Workload(model, setup.optimizer, train_step, forward_step, images, labels, setup.precision)


def synthetic_batch(batch_size: int, image_size: int, spec, data_format: str, seed: int):
    """Uniform random images scaled like real ones (`registry.preprocess`) and random labels."""
    generator = tf.random.Generator.from_seed(seed)
    images = registry.preprocess(generator.uniform([batch_size, image_size, image_size, 3]), spec)
    if data_format == "channels_first":
        images = tf.transpose(images, [0, 3, 1, 2])
    labels = generator.uniform([batch_size], maxval=len(CATEGORIES), dtype=tf.int32)
    return images, labels


def channels_first(model: tf.keras.Model) -> tf.keras.Model:
    """The same network with NCHW tensors: every spatial layer gets data_format="channels_first"
    and every channel axis (BatchNormalization, Concatenate) becomes axis 1.

    The registry builds NHWC (TensorFlow's fast layout on CPUs); the thesis benchmarked NCHW on
    GPUs (docs/background.md: Scaling), so `--data-format` converts instead of every builder taking a layout.
    """
    def convert(layer):
        config = layer.get_config()
        if "data_format" in config:
            config["data_format"] = "channels_first"
        if isinstance(layer, (tf.keras.layers.BatchNormalization, tf.keras.layers.Concatenate)):
            config["axis"] = 1
        return layer.__class__.from_config(config)

    height, width, channels = model.input_shape[1:]
    inputs = tf.keras.Input((channels, height, width), name=model.input_names[0])
    return tf.keras.models.clone_model(model, input_tensors=inputs, clone_function=convert)
