"""The Horovod data-parallel trainer: the whole distributed recipe in one page.

Every rank builds the same model, rank 0's initial weights and optimizer state are broadcast,
each rank trains on its own disjoint shard of every epoch, Horovod averages the gradients with
ring-allreduce, and all ranks apply the same update. The learning rate is scaled
by the number of ranks with a warmup (docs/background.md: Training recipe and Scaling). Rank 0 alone writes config, metrics,
checkpoints and results, and shows the progress bar.

Run it as one process (`semhpc train --config C`) or under `mpirun -np N` (`semhpc launch`).
"""

from __future__ import annotations

import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from semhpc.config import Config, save_config
from semhpc.data import pipeline
from semhpc.data.tfrecord import damage_reason
from semhpc.runtime import transfer
from semhpc.runtime.distributed import init_horovod
from semhpc.runtime.evaluation import evaluate, format_report
from semhpc.runtime.recipe import TrainingSetup, make_train_step, set_up_training, split_dataset
from semhpc.runtime.run_artifacts import mark_failed, save_weights, status_owned_by_me, write_status
from semhpc.runtime.stack import require_supported_stack
from semhpc.runtime.termination import on_termination
from semhpc.utils import atomic
from semhpc.utils.errors import SemhpcError, write_failure_text
from semhpc.utils.metrics_log import MetricsLog
from semhpc.utils.progress import progress


def train(cfg: Config, resume: bool = False) -> dict:
    """Train per `cfg` (continuing from the newest checkpoint when `resume`); return test results."""
    require_supported_stack()

    world = init_horovod(cfg.train.threads)
    run_dir = Path(cfg.run.dir)

    def record_termination() -> None:  # scancel, qdel, walltime, a dead node: the run did not finish
        if world.is_root and status_owned_by_me(run_dir):
            write_status(run_dir, "failed", None, error="terminated (SIGTERM): the job was cancelled or torn down")

    on_termination(record_termination)
    try:
        return _train(cfg, resume, world, run_dir)
    except BaseException as exc:
        written = write_failure_text(exc)  # a full disk: "PATH: no space left on device"
        if world.is_root and status_owned_by_me(run_dir):  # never touch another run's status
            unwritable = mark_failed(run_dir, written or f"{type(exc).__name__}: {exc}")
            if unwritable:  # the one line says that status.json still reads "running"
                cause = written or str(exc)
                why = "" if unwritable == cause else f" ({unwritable})"
                raise SemhpcError(f"{cause}; status.json still says running{why}") from None
        damaged = _damaged_record(exc, cfg.data.dir)
        if damaged is not None:
            raise damaged from None
        raise


def _damaged_record(exc: BaseException, data_dir) -> SemhpcError | None:
    """A record whose checksum fails (the shard's length is right, so the check before the first
    step passed): one line saying how to find and repair the shard, else None."""
    import tensorflow as tf

    if not isinstance(exc, tf.errors.DataLossError):
        return None
    return SemhpcError(f"{data_dir}: a TFRecord shard is damaged ({damage_reason(exc)}); `semhpc data report "
                       f"{data_dir}` names it: delete that shard and rerun `semhpc ingest SRC {data_dir}` "
                       "to rewrite it")


def _train(cfg: Config, resume: bool, world, run_dir: Path) -> dict:
    """The recipe: set up (the same start on every rank), train epoch by epoch, test and save."""
    run = _set_up(cfg, resume, world, run_dir)
    for epoch in range(run.first_epoch, cfg.train.epochs):
        whole_epoch = _train_epoch(run, epoch)
        _end_epoch(run, epoch, whole_epoch)
    return _finish(run)


@dataclass
class _Run:
    """What the steps of one training run share."""

    cfg: Config
    world: object  # runtime.distributed.HorovodWorld
    run_dir: Path
    hvd: object  # horovod.tensorflow
    classes: list
    setup: TrainingSetup
    steps_per_epoch: int
    train_steps: Callable  # (iterator, n) -> (loss sum, correct) of n steps
    train_batches: object  # one iterator over all remaining epochs' batches
    validation: object  # the eval split's dataset, iterated anew each epoch
    checkpoint: object
    step: int  # the global step, counted in Python (see _set_up)
    first_epoch: int
    done_in_first: int  # steps of first_epoch an interrupted run had already trained
    log: Optional[MetricsLog] = None  # rank 0 only
    manager: object = None  # rank 0's tf.train.CheckpointManager

    @property
    def global_batch(self) -> int:
        return self.cfg.train.batch_size * self.world.size


def _set_up(cfg: Config, resume: bool, world, run_dir: Path) -> _Run:
    """Check the data, build model and optimizer, restore (resume) or initialise weights, give
    every rank rank 0's starting point, and open rank 0's records."""
    import horovod.tensorflow as hvd
    import tensorflow as tf

    from semhpc.model import registry

    if not resume and (run_dir / "metrics.jsonl").exists():
        raise SemhpcError(f"{run_dir} already holds a run (metrics.jsonl): continue it with "
                          f"`semhpc train --resume {run_dir}` or choose another run.dir")
    manifest = pipeline.load_manifest(cfg.data.dir)
    classes = list(manifest["classes"])
    steps_per_epoch = pipeline.steps_per_epoch(manifest, "train", cfg.train.batch_size, world.size)
    for split in ("train", "validation", "test"):  # test is read only at the end: check every split now
        pipeline.check_split(manifest, split, cfg.data.dir)
    init_file = transfer.resolve_init_weights(cfg.train.init_weights, cfg.model.name)
    if init_file is None and cfg.train.mode != "scratch":
        raise SemhpcError(f"train.mode={cfg.train.mode} needs train.init_weights (a weights file, run dir or imagenet)")
    logits_scopes = registry.get_spec(cfg.model.name).logits_scopes

    def initialise(model):  # before the optimizer is built: it keeps slots for trainable variables only
        if init_file is not None and not resume:
            transfer.restore_except_logits(model, init_file, logits_scopes)
        transfer.freeze_for_mode(model, cfg.train.mode, logits_scopes)
        return model

    setup = set_up_training(cfg, len(classes), steps_per_epoch, world.size, prepare_model=initialise)
    model, optimizer = setup.model, setup.optimizer
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
    train_steps = _make_train_steps(make_train_step(setup, cfg.train, len(classes), allreduce=world.size > 1))

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
                  mode=cfg.train.mode, precision=setup.precision.policy,
                  steps_per_epoch=steps_per_epoch, global_batch=cfg.train.batch_size * world.size)
        if setup.precision.note:
            print(setup.precision.note, flush=True)
        manager = tf.train.CheckpointManager(checkpoint, run_dir / "checkpoints",
                                             max_to_keep=cfg.train.keep_checkpoints)

    first_epoch, done_in_first = divmod(start_step, steps_per_epoch)
    # One pipeline for all remaining epochs. Each epoch's order is a pure function of (seed, epoch):
    # a resumed run skips exactly the batches the interrupted run had already trained on.
    train_batches = iter(split_dataset(cfg, "train", training=True, rank=world.rank, world_size=world.size,
                                       epoch=first_epoch, epochs=cfg.train.epochs - first_epoch).skip(done_in_first))
    # train.eval_split: validation (default) or test (the thesis' protocol); built once, iterated anew.
    validation = split_dataset(cfg, cfg.train.eval_split, training=False, rank=world.rank, world_size=world.size)
    # The step is counted in Python: reading optimizer.iterations (or a step's loss) would wait for
    # the step to finish before the next one is dispatched, a bubble of Python overhead every step.
    return _Run(cfg, world, run_dir, hvd, classes, setup, steps_per_epoch, train_steps, train_batches, validation,
                checkpoint, start_step, first_epoch, done_in_first, log, manager)


def _train_epoch(run: _Run, epoch: int) -> _RunningMetrics:
    """Train epoch `epoch` (the rest of it on resume), logging every `log_every` steps and
    checkpointing every `checkpoint_every`; returns this rank's metrics of the whole epoch."""
    import tensorflow as tf

    cfg, world, hvd = run.cfg, run.world, run.hvd
    skip = run.done_in_first if epoch == run.first_epoch else 0
    interval, whole_epoch = _RunningMetrics(), _RunningMetrics()
    bar = progress(total=run.steps_per_epoch, desc=f"epoch {epoch + 1}/{cfg.train.epochs}",
                   enabled=world.is_root, unit="step")
    bar.update(skip)
    for steps in _executions(run.step, run.steps_per_epoch - skip, cfg.train):
        loss_sum, correct, own_seconds = run.train_steps(run.train_batches, tf.constant(steps))
        for running in (interval, whole_epoch):
            running.add(loss_sum, correct, steps, steps * cfg.train.batch_size, own_seconds)
        bar.update(steps)
        run.step += steps
        if run.step % cfg.train.log_every == 0:
            loss_avg, acc_avg = interval.averaged(hvd, "interval_metrics")
            rate = interval.images_per_sec(run.global_batch)
            # Each rank's step time and own part of it (collectives: every rank calls them). The
            # step times are alike (every rank waits at the allreduce); the own parts show a straggler.
            rank_times = hvd.allgather(tf.constant([interval.step_time()], tf.float64), name="rank_step_times")
            own_times = hvd.allgather(tf.reshape(interval.own_time(), [1]), name="rank_own_times")
            if world.is_root:
                bar.set_postfix(loss=f"{loss_avg:.3f}", acc=f"{acc_avg:.3f}", img_s=f"{rate:.0f}")
                run.log.write(kind="step", step=run.step, epoch=epoch + 1, loss=loss_avg, accuracy=acc_avg,
                              lr=float(run.setup.schedule(run.step)), images_per_sec=rate,
                              step_time=interval.step_time(),
                              rank_step_times=[float(t) for t in rank_times.numpy()],
                              rank_compute_times=[float(t) for t in own_times.numpy()])
            interval = _RunningMetrics()
        # The epoch's last step is checkpointed by _end_epoch, after its epoch record: a checkpoint
        # ahead of that record would let a resume skip the record (a rank dying in validation).
        if (world.is_root and cfg.train.checkpoint_every and run.step % cfg.train.checkpoint_every == 0
                and run.step % run.steps_per_epoch != 0):
            run.manager.save(checkpoint_number=run.step)
    bar.close()
    return whole_epoch


def _end_epoch(run: _Run, epoch: int, whole_epoch: _RunningMetrics) -> None:
    """Average the epoch's metrics and BatchNorm statistics over ranks, validate, and (rank 0)
    write the epoch record, then the checkpoint and weights."""

    cfg, world, hvd = run.cfg, run.world, run.hvd
    train_time = time.perf_counter() - whole_epoch.started
    loss_avg, acc_avg = whole_epoch.averaged(hvd, "epoch_metrics")
    _average_batchnorm_statistics(run.setup.model, hvd)
    val = evaluate(run.setup.inference_model, run.validation, len(run.classes), hvd)
    if world.is_root:
        rate = whole_epoch.images_per_sec(run.global_batch)
        run.log.write(kind="epoch", step=run.step, epoch=epoch + 1, loss=loss_avg, accuracy=acc_avg,
                      val_loss=val["loss"], val_accuracy=val["accuracy"], eval_split=cfg.train.eval_split,
                      lr=float(run.setup.schedule(run.step)),
                      images_per_sec=rate, epoch_time=train_time)
        run.manager.save(checkpoint_number=run.step)
        save_weights(run.setup.inference_model, run.run_dir / "latest_weights.h5")
        write_status(run.run_dir, "running", run.step)
        print(f"epoch {epoch + 1}: loss {loss_avg:.4f} acc {acc_avg:.4f} "
              f"{cfg.train.eval_split} acc {val['accuracy']:.4f} "
              f"({rate:.1f} img/s over {world.size} rank(s))", flush=True)


def _finish(run: _Run) -> dict:
    """Evaluate on the test split, prove the replicas agree, and (rank 0) save the final weights,
    test_metrics.json and the "finished" status."""

    world, hvd = run.world, run.hvd
    test_data = split_dataset(run.cfg, "test", training=False, rank=world.rank, world_size=world.size)
    test = evaluate(run.setup.inference_model, test_data, len(run.classes), hvd, class_names=run.classes)
    test["replica_fingerprints"] = _replica_fingerprints(run.setup.model, hvd)
    test["steps"] = int(run.setup.optimizer.iterations)
    if world.is_root:
        save_weights(run.setup.inference_model, run.run_dir / "final_weights.h5")
        atomic.write_json(run.run_dir / "test_metrics.json", test)
        run.log.write(kind="test", step=test["steps"], accuracy=test["accuracy"], loss=test["loss"],
                      top5_accuracy=test["top5_accuracy"])
        run.log.close()
        write_status(run.run_dir, "finished", test["steps"])
        print(format_report(test), flush=True)
    return test


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

    return [str(host) for host in hvd.allgather_object(socket.gethostname(), name="rank_hosts")]


def _replica_fingerprints(model, hvd) -> list[float]:
    """One checksum of all weights per rank, gathered: equal values prove the replicas agree."""
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
