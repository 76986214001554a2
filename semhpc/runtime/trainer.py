"""The Horovod data-parallel trainer: the whole distributed recipe in one page.

Every rank builds the same model, rank 0's initial weights and optimizer state are broadcast,
each rank trains on its own disjoint shard of every epoch, `DistributedGradientTape` averages
gradients with ring-allreduce, and all ranks apply the same update. The learning rate is scaled
by the number of ranks with a warmup (REFERENCE §3-4). Rank 0 alone writes config, metrics,
checkpoints and results, and shows the progress bar.

Run it as one process (`semhpc train --config C`) or under `mpirun -np N` (`semhpc launch`).
"""

from __future__ import annotations

import time
from pathlib import Path

from semhpc.config import Config, save_config
from semhpc.runtime.stack import require_supported_stack
from semhpc.utils import atomic
from semhpc.utils.metrics_log import MetricsLog
from semhpc.utils.progress import progress


def train(cfg: Config) -> dict:
    """Train per `cfg`; return the test results (identical on every rank)."""
    require_supported_stack()
    from semhpc.runtime.distributed import init_horovod

    world = init_horovod(cfg.train.threads)

    import horovod.tensorflow as hvd
    import tensorflow as tf

    from semhpc.data import pipeline
    from semhpc.model import registry
    from semhpc.runtime.evaluation import evaluate, format_report
    from semhpc.runtime.schedule import make_optimizer, make_schedule

    run_dir = Path(cfg.run.dir)
    manifest = pipeline.load_manifest(cfg.data.dir)
    classes = list(manifest["classes"])
    spec = registry.get_spec(cfg.model.name)

    tf.keras.utils.set_random_seed(cfg.train.seed)
    model = registry.build(cfg.model.name, num_classes=len(classes), input_size=cfg.data.image_size,
                           dropout=cfg.model.dropout or None)
    steps_per_epoch = pipeline.steps_per_epoch(manifest, "train", cfg.train.batch_size, world.size)
    schedule = make_schedule(cfg.train, steps_per_epoch, world.size)
    optimizer = make_optimizer(cfg.train, schedule)
    optimizer.build(model.trainable_variables)

    # Same starting point everywhere: rank 0's weights and optimizer slots.
    hvd.broadcast_variables(model.variables, root_rank=0)
    hvd.broadcast_variables(optimizer.variables, root_rank=0)

    train_step = _make_train_step(model, optimizer, cfg.train, len(classes))

    def dataset(split, training, epoch=0):
        return pipeline.make_dataset(
            cfg.data.dir, split, cfg.data.image_size, cfg.train.batch_size, training=training,
            rank=world.rank, world_size=world.size, seed=cfg.train.seed, epoch=epoch,
            preprocess_fn=lambda x: registry.preprocess(x, spec), augment=cfg.data.augment,
            cache=cfg.data.cache,
        )

    log = None
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer)
    if world.is_root:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir)
        log = MetricsLog(run_dir / "metrics.jsonl")
        log.write(kind="start", ranks=world.size, threads_per_rank=world.threads, model=cfg.model.name,
                  params=int(model.count_params()), steps_per_epoch=steps_per_epoch,
                  global_batch=cfg.train.batch_size * world.size)
        manager = tf.train.CheckpointManager(checkpoint, run_dir / "checkpoints",
                                             max_to_keep=cfg.train.keep_checkpoints)

    global_batch = cfg.train.batch_size * world.size
    for epoch in range(cfg.train.epochs):
        interval, whole_epoch = _RunningMetrics(), _RunningMetrics()
        bar = progress(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{cfg.train.epochs}",
                       enabled=world.is_root, unit="step")
        for images, labels in dataset("train", True, epoch).take(steps_per_epoch):
            loss, correct = train_step(images, labels)
            for running in (interval, whole_epoch):
                running.add(float(loss), float(correct), len(labels))
            bar.update(1)
            step = int(optimizer.iterations)
            if step % cfg.train.log_every == 0:
                loss_avg, acc_avg = interval.averaged(hvd, "interval_metrics")
                rate = interval.images_per_sec(global_batch)
                if world.is_root:
                    bar.set_postfix(loss=f"{loss_avg:.3f}", acc=f"{acc_avg:.3f}", img_s=f"{rate:.0f}")
                    log.write(kind="step", step=step, epoch=epoch + 1, loss=loss_avg, accuracy=acc_avg,
                              lr=float(schedule(step)), images_per_sec=rate,
                              step_time=interval.step_time())
                interval = _RunningMetrics()
        bar.close()
        train_time = time.perf_counter() - whole_epoch.started
        loss_avg, acc_avg = whole_epoch.averaged(hvd, "epoch_metrics")
        val = evaluate(model, dataset("validation", False), len(classes), hvd)
        if world.is_root:
            rate = whole_epoch.images_per_sec(global_batch)
            log.write(kind="epoch", step=int(optimizer.iterations), epoch=epoch + 1, loss=loss_avg,
                      accuracy=acc_avg, val_loss=val["loss"], val_accuracy=val["accuracy"],
                      lr=float(schedule(optimizer.iterations)), images_per_sec=rate, epoch_time=train_time)
            manager.save(checkpoint_number=int(optimizer.iterations))
            print(f"epoch {epoch + 1}: loss {loss_avg:.4f} acc {acc_avg:.4f} val_acc {val['accuracy']:.4f} "
                  f"({rate:.1f} img/s over {world.size} rank(s))", flush=True)

    test = evaluate(model, dataset("test", False), len(classes), hvd, class_names=classes)
    if world.is_root:
        model.save_weights(run_dir / "final.weights.h5")
        atomic.write_json(run_dir / "test_metrics.json", test)
        log.write(kind="test", step=int(optimizer.iterations), accuracy=test["accuracy"], loss=test["loss"])
        print(format_report(test), flush=True)
    return test


def _make_train_step(model, optimizer, train_cfg, num_classes):
    """One synchronous step: forward, loss + L2, allreduced gradients, update."""
    import horovod.tensorflow as hvd
    import tensorflow as tf

    loss_fn = tf.keras.losses.CategoricalCrossentropy(from_logits=True,
                                                      label_smoothing=train_cfg.label_smoothing)
    kernels = [v for v in model.trainable_variables if "kernel" in v.name]

    @tf.function
    def train_step(images, labels):
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            loss = loss_fn(tf.one_hot(labels, num_classes), logits)
            if train_cfg.weight_decay:
                loss += train_cfg.weight_decay * tf.add_n([tf.nn.l2_loss(k) for k in kernels])
        tape = hvd.DistributedGradientTape(tape)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=labels.dtype), labels),
                                        tf.float32))
        return loss, correct

    return train_step


class _RunningMetrics:
    """This rank's loss/accuracy sums since `started`; averaged over ranks on demand."""

    def __init__(self):
        self.loss_sum = self.steps = self.correct = self.images = 0.0
        self.started = time.perf_counter()

    def add(self, loss, correct, images):
        self.loss_sum += loss
        self.steps += 1
        self.correct += correct
        self.images += images

    def averaged(self, hvd, name):
        """(loss, accuracy) over all ranks; every rank must call it at the same point."""
        import tensorflow as tf

        sums = hvd.allreduce(tf.constant([self.loss_sum, self.steps, self.correct, self.images]),
                             op=hvd.Sum, name=name).numpy()
        return float(sums[0] / max(sums[1], 1)), float(sums[2] / max(sums[3], 1))

    def step_time(self):
        return (time.perf_counter() - self.started) / max(self.steps, 1)

    def images_per_sec(self, global_batch):
        """REFERENCE eq. 4.1: batch_size / step_time x workers."""
        return global_batch / self.step_time()
