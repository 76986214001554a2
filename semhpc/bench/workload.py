"""What `semhpc bench` and `semhpc profile` time: a registry model, one synthetic batch held in
memory, and the trainer's own training step.

Using the trainer's step (its loss, weight decay, Horovod gradient allreduce and optimizer)
means a benchmark figure is a training figure, not the figure of a simpler loop. Synthetic input
(docs/background.md: Scaling, the thesis' benchmark method) keeps the input pipeline out of the measurement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import tensorflow as tf

from semhpc.data.categories import CATEGORIES
from semhpc.model import registry
from semhpc.runtime.precision import Precision, apply_precision, enable_xla, resolve_precision
from semhpc.utils.errors import SemhpcError

DATA_FORMATS = ("channels_last", "channels_first")
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
    from semhpc.runtime.schedule import make_optimizer, make_schedule

    has_gpu = bool(tf.config.list_physical_devices("GPU"))
    check_data_format(data_format, has_gpu)
    spec = registry.get_spec(cfg.model.name)
    precision = resolve_precision(cfg.train.precision, has_gpu)
    apply_precision(precision)
    if cfg.train.xla:
        enable_xla()
    tf.keras.utils.set_random_seed(cfg.train.seed)
    with_aux = bool(cfg.model.aux_logits and spec.aux_loss_weight)
    model = registry.build(cfg.model.name, num_classes=len(CATEGORIES), input_size=cfg.data.image_size,
                           aux_logits=with_aux, dropout=cfg.model.dropout or None)
    if data_format == "channels_first":
        model = channels_first(model)

    optimizer = make_optimizer(cfg.train, make_schedule(cfg.train, _SCHEDULE_STEPS_PER_EPOCH, world_size))
    if precision.loss_scaling:
        optimizer = tf.keras.mixed_precision.LossScaleOptimizer(optimizer)
    optimizer.build(model.trainable_variables)
    train_step = trainer_step(model, optimizer, cfg.train, spec.aux_loss_weight if with_aux else None, precision,
                              allreduce=world_size > 1)

    @tf.function
    def forward_step(images):
        outputs = model(images, training=False)
        return outputs[0] if isinstance(outputs, (list, tuple)) else outputs

    images, labels = synthetic_batch(cfg.train.batch_size, cfg.data.image_size, spec, data_format, cfg.train.seed)
    return Workload(model, optimizer, train_step, forward_step, images, labels, precision)


def check_data_format(data_format: str, has_gpu: bool) -> None:
    """NCHW only on GPUs: TensorFlow's CPU max pooling refuses NCHW, and with oneDNN (the default)
    it runs but returns wrong values, so a CPU benchmark in NCHW would time a broken network."""
    if data_format not in DATA_FORMATS:
        raise SemhpcError(f"--data-format {data_format}: must be one of {', '.join(DATA_FORMATS)}")
    if data_format == "channels_first" and not has_gpu:
        raise SemhpcError("--data-format channels_first needs a GPU: TensorFlow's CPU kernels are NHWC only "
                          "(docs/background.md: Scaling: NCHW on GPU, NHWC on CPU)")


def trainer_step(model, optimizer, train_cfg, aux_loss_weight, precision, allreduce: bool) -> Callable:
    """The trainer's compiled training step (the one place that reaches into the trainer)."""
    from semhpc.runtime.trainer import _make_train_step

    return _make_train_step(model, optimizer, train_cfg, len(CATEGORIES), aux_loss_weight, precision,
                            allreduce=allreduce)


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
