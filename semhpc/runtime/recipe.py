"""The training recipe shared by `semhpc train` and the benchmarks: one setup, one step, one input.

`set_up_training` fixes everything a training figure depends on (precision policy, XLA, seed,
the model with its BatchNorm momentum, the optimizer with its learning-rate schedule and loss
scaling); `make_train_step` is the synchronous data-parallel step; `split_dataset` reads a split
of an ingested dataset the way the config says. The trainer (runtime/trainer.py) and
`semhpc bench`/`semhpc profile` (bench/workload.py) both use them, so a benchmark figure is a
training figure and a setting cannot reach one of them and miss the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from semhpc.config import Config
from semhpc.runtime.precision import Precision, apply_precision, enable_xla, resolve_precision


@dataclass
class TrainingSetup:
    spec: object  # the registry's ModelSpec of cfg.model.name
    precision: Precision
    model: object  # tf.keras.Model trained: with the auxiliary head when the architecture has one and it is on
    inference_model: object  # the same layers without the auxiliary head: evaluated and saved
    schedule: Callable  # step -> learning rate
    optimizer: object  # built for model.trainable_variables (loss-scaled when the precision needs it)


def set_up_training(cfg: Config, num_classes: int, steps_per_epoch: int, world_size: int,
                    prepare_model: Optional[Callable] = None) -> TrainingSetup:
    """Precision, XLA, seed, model, schedule and optimizer for `cfg`, in that order.

    `prepare_model(model) -> model` runs between building the model and building the optimizer:
    the trainer restores pretrained weights and freezes layers there (the optimizer then holds
    slots for the trainable variables only), a benchmark converts the layout to NCHW.
    """
    import tensorflow as tf

    from semhpc.model import registry
    from semhpc.runtime.schedule import make_optimizer, make_schedule

    spec = registry.get_spec(cfg.model.name)
    precision = resolve_precision(cfg.train.precision, bool(tf.config.list_physical_devices("GPU")))
    apply_precision(precision)
    if cfg.train.xla:
        enable_xla()
    tf.keras.utils.set_random_seed(cfg.train.seed)

    with_aux = bool(cfg.model.aux_logits and spec.aux_loss_weight)
    model = registry.build(cfg.model.name, num_classes=num_classes, input_size=cfg.data.image_size,
                           aux_logits=with_aux, dropout=cfg.model.dropout or None)
    for layer in model.layers:
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            layer.momentum = cfg.model.bn_momentum
    if prepare_model is not None:
        model = prepare_model(model)
    inference_model = (tf.keras.Model(model.inputs, model.outputs[0], name=f"{model.name}_inference")
                       if with_aux else model)

    schedule = make_schedule(cfg.train, steps_per_epoch, world_size)
    optimizer = make_optimizer(cfg.train, schedule)
    if precision.loss_scaling:
        optimizer = tf.keras.mixed_precision.LossScaleOptimizer(optimizer)
    optimizer.build(model.trainable_variables)
    return TrainingSetup(spec, precision, model, inference_model, schedule, optimizer)


def make_train_step(setup: TrainingSetup, train_cfg, num_classes: int, allreduce: bool = True) -> Callable:
    """One synchronous step, (images, labels) -> (loss, correct predictions, time this rank's
    gradients were ready, time the allreduce ended): forward, loss (+ auxiliary loss, + L2),
    allreduced gradients, update. The rank's own part of the step ends where its wait for the
    other ranks begins, which is what shows a straggler.

    `allreduce=False` (a single rank) leaves out Horovod's allreduce: with one rank it has nothing
    to average, but would still add a size check and a conditional per gradient to the step.
    """
    import horovod.tensorflow as hvd
    import tensorflow as tf

    model, optimizer, precision = setup.model, setup.optimizer, setup.precision
    aux_loss_weight = setup.spec.aux_loss_weight
    loss_fn = tf.keras.losses.CategoricalCrossentropy(from_logits=True,
                                                      label_smoothing=train_cfg.label_smoothing)
    kernels = [v for v in model.trainable_variables if "kernel" in v.name]
    compression = hvd.Compression.fp16 if train_cfg.fp16_allreduce else hvd.Compression.none

    @tf.function
    def train_step(images, labels):
        targets = tf.one_hot(labels, num_classes)
        with tf.GradientTape() as tape:
            outputs = model(images, training=True)
            if isinstance(outputs, (list, tuple)):  # [logits, auxiliary logits]
                logits = tf.cast(outputs[0], tf.float32)
                loss = loss_fn(targets, logits) + aux_loss_weight * loss_fn(targets, tf.cast(outputs[1], tf.float32))
            else:
                logits = tf.cast(outputs, tf.float32)
                loss = loss_fn(targets, logits)
            if train_cfg.weight_decay and kernels:
                loss += train_cfg.weight_decay * tf.add_n([tf.nn.l2_loss(k) for k in kernels])
            scaled_loss = optimizer.get_scaled_loss(loss) if precision.loss_scaling else loss
        grads = tape.gradient(scaled_loss, model.trainable_variables)
        with tf.control_dependencies([g for g in grads if g is not None]):
            gradients_ready = tf.timestamp()
        if allreduce:  # what DistributedGradientTape does, with the moment in between recorded
            grads = [g if g is None else hvd.allreduce(g, op=hvd.Average, compression=compression) for g in grads]
        with tf.control_dependencies([g for g in grads if g is not None]):
            reduced = tf.timestamp()
        if precision.loss_scaling:
            grads = optimizer.get_unscaled_gradients(grads)
        if train_cfg.clip_norm:
            grads, _ = tf.clip_by_global_norm(grads, train_cfg.clip_norm)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=labels.dtype), labels),
                                        tf.float32))
        return loss, correct, gradients_ready, reduced

    return train_step


def split_dataset(cfg: Config, split: str, *, training: bool, rank: int = 0, world_size: int = 1, epoch: int = 0,
                  epochs: int = 1, batch_size: Optional[int] = None, cache: Optional[bool] = None, data_dir=None):
    """Batches of this rank's part of `split` of `cfg.data.dir` (unless `data_dir`), scaled for
    `cfg.model.name`, with the config's image size, batch size (unless `batch_size`), seed,
    augmentation and cache (unless `cache`)."""
    from semhpc.data import pipeline
    from semhpc.model import registry

    spec = registry.get_spec(cfg.model.name)
    return pipeline.make_dataset(
        data_dir or cfg.data.dir, split, cfg.data.image_size, batch_size or cfg.train.batch_size, training=training,
        rank=rank, world_size=world_size, seed=cfg.train.seed, epoch=epoch, epochs=epochs,
        preprocess_fn=lambda images: registry.preprocess(images, spec), augment=cfg.data.augment,
        cache=cfg.data.cache if cache is None else cache,
    )
