"""The Horovod data-parallel trainer: the whole distributed recipe in one page.

Every rank builds the same model, rank 0's initial weights and optimizer state are broadcast,
each rank trains on its own disjoint shard of every epoch, Horovod averages the gradients with
ring-allreduce, and all ranks apply the same update. The learning rate is scaled
by the number of ranks with a warmup (docs/background.md: Training recipe and Scaling). Rank 0 alone writes config, metrics,
checkpoints and results, and shows the progress bar.

Run it as one process (`semhpc train --config C`) or under `mpirun -np N` (`semhpc launch`).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from semhpc.config import Config, save_config
from semhpc.runtime import transfer
from semhpc.runtime.precision import apply_precision, enable_xla, resolve_precision
from semhpc.runtime.run_artifacts import save_weights, status_owned_by_me, write_status
from semhpc.runtime.stack import require_supported_stack
from semhpc.runtime.termination import on_termination
from semhpc.utils import atomic
from semhpc.utils.errors import SemhpcError
from semhpc.utils.metrics_log import MetricsLog
from semhpc.utils.progress import progress


def train(cfg: Config, resume: bool = False) -> dict:
    """Train per `cfg` (continuing from the newest checkpoint when `resume`); return test results."""
    require_supported_stack()
    from semhpc.runtime.distributed import init_horovod

    world = init_horovod(cfg.train.threads)
    run_dir = Path(cfg.run.dir)

    def record_termination() -> None:  # scancel, qdel, walltime, a dead node: the run did not finish
        if world.is_root and status_owned_by_me(run_dir):
            write_status(run_dir, "failed", None, error="terminated (SIGTERM): the job was cancelled or torn down")

    on_termination(record_termination)
    try:
        return _train(cfg, resume, world, run_dir)
    except BaseException as exc:
        if world.is_root and status_owned_by_me(run_dir):  # never touch another run's status
            write_status(run_dir, "failed", None, error=f"{type(exc).__name__}: {exc}")
        damaged = _damaged_record(exc, cfg.data.dir)
        if damaged is not None:
            raise damaged from None
        raise


def _damaged_record(exc: BaseException, data_dir) -> SemhpcError | None:
    """A record whose checksum fails (the shard's length is right, so the check before the first
    step passed): one line saying how to find and repair the shard, else None."""
    import tensorflow as tf

    from semhpc.data.tfrecord import damage_reason

    if not isinstance(exc, tf.errors.DataLossError):
        return None
    return SemhpcError(f"{data_dir}: a TFRecord shard is damaged ({damage_reason(exc)}); `semhpc data report "
                       f"{data_dir}` names it: delete that shard and rerun `semhpc ingest SRC {data_dir}` "
                       "to rewrite it")


def _train(cfg: Config, resume: bool, world, run_dir: Path) -> dict:
    import horovod.tensorflow as hvd
    import tensorflow as tf

    from semhpc.data import pipeline
    from semhpc.model import registry
    from semhpc.runtime.evaluation import evaluate, format_report
    from semhpc.runtime.schedule import make_optimizer, make_schedule

    if not resume and (run_dir / "metrics.jsonl").exists():
        raise SemhpcError(f"{run_dir} already holds a run (metrics.jsonl): continue it with "
                          f"`semhpc train --resume {run_dir}` or choose another run.dir")
    manifest = pipeline.load_manifest(cfg.data.dir)
    classes = list(manifest["classes"])
    spec = registry.get_spec(cfg.model.name)
    precision = resolve_precision(cfg.train.precision, bool(tf.config.list_physical_devices("GPU")))
    apply_precision(precision)
    if cfg.train.xla:
        enable_xla()

    tf.keras.utils.set_random_seed(cfg.train.seed)
    model, inference_model = _build_models(cfg, spec, len(classes))
    init_file = transfer.resolve_init_weights(cfg.train.init_weights, cfg.model.name)
    if init_file is None and cfg.train.mode != "scratch":
        raise SemhpcError(f"train.mode={cfg.train.mode} needs train.init_weights (a weights file, run dir or imagenet)")
    if init_file is not None and not resume:
        transfer.restore_except_logits(model, init_file, spec.logits_scopes)
    transfer.freeze_for_mode(model, cfg.train.mode, spec.logits_scopes)

    steps_per_epoch = pipeline.steps_per_epoch(manifest, "train", cfg.train.batch_size, world.size)
    for split in ("train", "validation", "test"):  # test is read only at the end: check every split now
        pipeline.check_split(manifest, split, cfg.data.dir)
    schedule = make_schedule(cfg.train, steps_per_epoch, world.size)
    optimizer = make_optimizer(cfg.train, schedule)
    if precision.loss_scaling:
        optimizer = tf.keras.mixed_precision.LossScaleOptimizer(optimizer)
    optimizer.build(model.trainable_variables)

    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer)
    if resume:  # every rank reads the same checkpoint; only rank 0 ever writes one
        try:
            _restore_latest(checkpoint, run_dir / "checkpoints", announce=world.is_root)
        except SemhpcError as exc:  # the run did not continue: status.json must not keep "finished"
            if world.is_root and run_dir.is_dir():
                write_status(run_dir, "failed", None, error=f"resume: {exc}")
            raise
    # Same starting point everywhere: rank 0's weights and optimizer slots.
    hvd.broadcast_variables(model.variables, root_rank=0)
    hvd.broadcast_variables(optimizer.variables, root_rank=0)
    start_step = int(optimizer.iterations)

    train_step = _make_train_step(model, optimizer, cfg.train, len(classes), spec.aux_loss_weight, precision,
                                  allreduce=world.size > 1)
    train_steps = _make_train_steps(train_step)

    def dataset(split, training, epoch=0, epochs=1):
        return pipeline.make_dataset(
            cfg.data.dir, split, cfg.data.image_size, cfg.train.batch_size, training=training,
            rank=world.rank, world_size=world.size, seed=cfg.train.seed, epoch=epoch, epochs=epochs,
            preprocess_fn=lambda x: registry.preprocess(x, spec), augment=cfg.data.augment,
            cache=cfg.data.cache,
        )

    hosts = _rank_hosts(hvd)
    log = manager = None
    if world.is_root:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir)
        write_status(run_dir, "running", start_step)
        log = MetricsLog(run_dir / "metrics.jsonl", keep_until_step=start_step if resume else None,
                         tensorboard_dir=run_dir / "tensorboard")
        log.write(kind="resume" if resume else "start", step=start_step, ranks=world.size, hosts=hosts,
                  threads_per_rank=world.threads, model=cfg.model.name, params=int(model.count_params()),
                  trainable_params=int(sum(v.shape.num_elements() for v in model.trainable_variables)),
                  mode=cfg.train.mode, precision=precision.policy,
                  steps_per_epoch=steps_per_epoch, global_batch=cfg.train.batch_size * world.size)
        if precision.note:
            print(precision.note, flush=True)
        manager = tf.train.CheckpointManager(checkpoint, run_dir / "checkpoints",
                                             max_to_keep=cfg.train.keep_checkpoints)

    global_batch = cfg.train.batch_size * world.size
    first_epoch, done_in_first = divmod(start_step, steps_per_epoch)
    # Counted in Python: reading optimizer.iterations (or a step's loss) would wait for the step
    # to finish before the next one is dispatched, a bubble of Python overhead every step.
    step = start_step
    # One pipeline for all remaining epochs. Each epoch's order is a pure function of (seed, epoch):
    # a resumed run skips exactly the batches the interrupted run had already trained on.
    train_batches = iter(dataset("train", True, first_epoch, cfg.train.epochs - first_epoch).skip(done_in_first))
    # train.eval_split: validation (default) or test (the thesis' protocol); built once, iterated anew.
    validation = dataset(cfg.train.eval_split, False)
    for epoch in range(first_epoch, cfg.train.epochs):
        skip = done_in_first if epoch == first_epoch else 0
        interval, whole_epoch = _RunningMetrics(), _RunningMetrics()
        bar = progress(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{cfg.train.epochs}",
                       enabled=world.is_root, unit="step")
        bar.update(skip)
        for steps in _executions(step, steps_per_epoch - skip, cfg.train):
            loss_sum, correct, own_seconds = train_steps(train_batches, tf.constant(steps))
            for running in (interval, whole_epoch):
                running.add(loss_sum, correct, steps, steps * cfg.train.batch_size, own_seconds)
            bar.update(steps)
            step += steps
            if step % cfg.train.log_every == 0:
                loss_avg, acc_avg = interval.averaged(hvd, "interval_metrics")
                rate = interval.images_per_sec(global_batch)
                # Each rank's step time and own part of it (collectives: every rank calls them). The
                # step times are alike (every rank waits at the allreduce); the own parts show a straggler.
                rank_times = hvd.allgather(tf.constant([interval.step_time()], tf.float64), name="rank_step_times")
                own_times = hvd.allgather(tf.reshape(interval.own_time(), [1]), name="rank_own_times")
                if world.is_root:
                    bar.set_postfix(loss=f"{loss_avg:.3f}", acc=f"{acc_avg:.3f}", img_s=f"{rate:.0f}")
                    log.write(kind="step", step=step, epoch=epoch + 1, loss=loss_avg, accuracy=acc_avg,
                              lr=float(schedule(step)), images_per_sec=rate,
                              step_time=interval.step_time(),
                              rank_step_times=[float(t) for t in rank_times.numpy()],
                              rank_compute_times=[float(t) for t in own_times.numpy()])
                interval = _RunningMetrics()
            # The epoch's last step is checkpointed below, after its epoch record: a checkpoint
            # ahead of that record would let a resume skip the record (a rank dying in validation).
            if (world.is_root and cfg.train.checkpoint_every and step % cfg.train.checkpoint_every == 0
                    and step % steps_per_epoch != 0):
                manager.save(checkpoint_number=step)
        bar.close()
        train_time = time.perf_counter() - whole_epoch.started
        loss_avg, acc_avg = whole_epoch.averaged(hvd, "epoch_metrics")
        _average_batchnorm_statistics(model, hvd)
        val = evaluate(inference_model, validation, len(classes), hvd)
        if world.is_root:
            rate = whole_epoch.images_per_sec(global_batch)
            log.write(kind="epoch", step=step, epoch=epoch + 1, loss=loss_avg, accuracy=acc_avg,
                      val_loss=val["loss"], val_accuracy=val["accuracy"], eval_split=cfg.train.eval_split,
                      lr=float(schedule(step)),
                      images_per_sec=rate, epoch_time=train_time)
            manager.save(checkpoint_number=step)
            save_weights(inference_model, run_dir / "latest_weights.h5")
            write_status(run_dir, "running", step)
            print(f"epoch {epoch + 1}: loss {loss_avg:.4f} acc {acc_avg:.4f} "
                  f"{cfg.train.eval_split} acc {val['accuracy']:.4f} "
                  f"({rate:.1f} img/s over {world.size} rank(s))", flush=True)

    test = evaluate(inference_model, dataset("test", False), len(classes), hvd, class_names=classes)
    test["replica_fingerprints"] = _replica_fingerprints(model, hvd)
    test["steps"] = int(optimizer.iterations)
    if world.is_root:
        save_weights(inference_model, run_dir / "final_weights.h5")
        atomic.write_json(run_dir / "test_metrics.json", test)
        log.write(kind="test", step=test["steps"], accuracy=test["accuracy"], loss=test["loss"],
                  top5_accuracy=test["top5_accuracy"])
        log.close()
        write_status(run_dir, "finished", test["steps"])
        print(format_report(test), flush=True)
    return test


def _build_models(cfg: Config, spec, num_classes: int):
    """(model trained, model evaluated and saved): the same layers; the trained one also has the
    auxiliary head when the architecture has one and `model.aux_logits` is on."""
    import tensorflow as tf

    from semhpc.model import registry

    with_aux = bool(cfg.model.aux_logits and spec.aux_loss_weight)
    model = registry.build(cfg.model.name, num_classes=num_classes, input_size=cfg.data.image_size,
                           aux_logits=with_aux, dropout=cfg.model.dropout or None)
    for layer in model.layers:
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            layer.momentum = cfg.model.bn_momentum
    if not with_aux:
        return model, model
    return model, tf.keras.Model(model.inputs, model.outputs[0], name=f"{model.name}_inference")


def _restore_latest(checkpoint, directory: Path, announce: bool) -> None:
    """Restore the newest intact checkpoint; a damaged newer one (a truncated file after a full
    disk or a killed copy) is named and skipped, and none intact is one SemhpcError line."""
    numbered = []
    for index in directory.glob("ckpt-*.index"):
        number = index.name[len("ckpt-"):-len(".index")]
        if number.isdigit():
            numbered.append((int(number), str(index)[:-len(".index")]))
    if not numbered:
        raise SemhpcError(f"{directory}: no checkpoint to resume from")
    damaged = []
    for _, prefix in sorted(numbered, reverse=True):
        try:
            checkpoint.restore(prefix).assert_existing_objects_matched()
        except Exception as exc:  # noqa: BLE001 -- TF reports a short file as IndexError, OpError, ValueError...
            reason = ((getattr(exc, "message", None) or str(exc)).strip().splitlines() or [""])[0]
            damaged.append(f"{Path(prefix).name} ({type(exc).__name__}: {reason[:200]})")
            continue
        if damaged and announce:
            print(f"semhpc train: warning: damaged checkpoint(s) skipped: {'; '.join(damaged)}; "
                  f"resuming from {Path(prefix).name}", file=sys.stderr, flush=True)
        return
    raise SemhpcError(f"{directory}: no intact checkpoint to resume from: {'; '.join(damaged)}")


def _executions(step: int, steps: int, train_cfg):
    """How many steps each call of `train_steps` runs, to cover `steps` steps after global step `step`.

    Up to `steps_per_execution` per call, but a call always ends on a step that is logged or
    checkpointed, so records and checkpoints fall on the same steps whatever the setting.
    """
    boundaries = [every for every in (train_cfg.log_every, train_cfg.checkpoint_every) if every]
    while steps:
        run = min([steps, train_cfg.steps_per_execution] + [every - step % every for every in boundaries])
        yield run
        step += run
        steps -= run


def _make_train_steps(train_step):
    """(iterator, n) -> (sum of the n steps' losses, their correct predictions, this rank's own
    seconds in them), in one call.

    A rank's own part of a step runs from the end of the previous step's allreduce until its
    gradients are ready: waiting for its batch, forward and backward. The rest of the step is the
    wait for the slowest rank at the allreduce, so the own parts show which rank is the straggler.

    Driving each step from Python costs a function call and an iterator round trip while the cores
    wait: on a CPU that is a few percent of a small model's step. Running n steps in a graph loop
    (Keras' `steps_per_execution`) pays it once per n steps; the steps and their order are the same.
    """
    import tensorflow as tf

    @tf.function
    def train_steps(iterator, steps):
        loss_sum = correct_sum = tf.constant(0.0)
        own_seconds = tf.constant(0.0, tf.float64)
        previous_step_reduced = tf.timestamp()
        for _ in tf.range(steps):
            images, labels = next(iterator)
            loss, correct, gradients_ready, reduced = train_step(images, labels)
            loss_sum += loss
            correct_sum += correct
            own_seconds += gradients_ready - previous_step_reduced
            previous_step_reduced = reduced
        return loss_sum, correct_sum, own_seconds

    return train_steps


def _make_train_step(model, optimizer, train_cfg, num_classes, aux_loss_weight, precision, allreduce=True):
    """One synchronous step: forward, loss (+ auxiliary loss, + L2), allreduced gradients, update.
    Returns (loss, correct predictions, time this rank's gradients were ready, time the allreduce
    ended): the rank's own part of the step ends where its wait for the other ranks begins.

    `allreduce=False` (a single rank) leaves out Horovod's allreduce: with one rank it has nothing
    to average, but would still add a size check and a conditional per gradient to the step.
    """
    import horovod.tensorflow as hvd
    import tensorflow as tf

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


def _average_batchnorm_statistics(model, hvd):
    """Average BatchNorm moving statistics over ranks.

    Gradients are allreduced, so trainable weights stay identical on every rank, but each rank's
    moving mean/variance come from its own batches. Averaging them once per epoch keeps the
    replicas identical and gives validation a better estimate than any single rank's.
    """
    for variable in model.non_trainable_variables:
        if "moving_" in variable.name:
            variable.assign(hvd.allreduce(variable, op=hvd.Average, name=f"sync_{variable.name}"))


def _rank_hosts(hvd) -> list[str]:
    """Each rank's host name, in rank order: the start record shows where the ranks ran."""
    import socket

    return [str(host) for host in hvd.allgather_object(socket.gethostname(), name="rank_hosts")]


def _replica_fingerprints(model, hvd) -> list[float]:
    """One checksum of all weights per rank, gathered: equal values prove the replicas agree."""
    import numpy as np
    import tensorflow as tf

    local = sum((i + 1) * float(np.sum(v.numpy(), dtype=np.float64)) for i, v in enumerate(model.variables))
    return [float(x) for x in hvd.allgather(tf.constant([local], tf.float64), name="fingerprints").numpy()]


class _RunningMetrics:
    """This rank's loss/accuracy sums and own seconds since `started`; averaged over ranks on demand.

    The sums stay tensors until `averaged` is called, so adding a step's results never waits for it.
    """

    def __init__(self):
        self.loss_sum = self.steps = self.correct = self.images = self.own_seconds = 0.0
        self.started = time.perf_counter()

    def add(self, loss_sum, correct, steps: int, images: int, own_seconds):
        self.loss_sum += loss_sum
        self.steps += steps
        self.correct += correct
        self.images += images
        self.own_seconds += own_seconds

    def averaged(self, hvd, name):
        """(loss, accuracy) over all ranks; every rank must call it at the same point."""
        import tensorflow as tf

        totals = [tf.cast(value, tf.float64) for value in (self.loss_sum, self.steps, self.correct, self.images)]
        sums = hvd.allreduce(tf.stack(totals), op=hvd.Sum, name=name).numpy()
        return float(sums[0] / max(sums[1], 1)), float(sums[2] / max(sums[3], 1))

    def step_time(self):
        return (time.perf_counter() - self.started) / max(self.steps, 1)

    def own_time(self):
        """Mean seconds per step of this rank's own part (see `_make_train_steps`), a float64 tensor."""
        import tensorflow as tf

        return tf.cast(self.own_seconds, tf.float64) / max(self.steps, 1)

    def images_per_sec(self, global_batch):
        """eq. 4.1 of De Nobili 2017, docs/background.md: Scaling: batch_size / step_time x workers."""
        return global_batch / self.step_time()
