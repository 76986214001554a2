"""Trainer efficiency: `semhpc train` images/sec against a minimal hand-written GradientTape loop
and against tf.keras `model.fit`: same model, batch, data (the same `pipeline.make_dataset` batches),
optimizer and threads, each in a fresh process on the same cores.

All three minimise plain softmax cross-entropy with the recipe's RMSProp (the trainer runs with
weight_decay=0 so it does the same arithmetic). images/sec = training images of epochs 2..E /
their training time; epoch 1 (graph tracing) is left out. For the trainer the training time is
`epoch_time` of metrics.jsonl (it excludes the validation pass; the epoch record's own
`images_per_sec` includes it). The trainer runs with its defaults
(`train.steps_per_execution=10`); the loop and `model.fit` (its default `steps_per_execution=1`)
make one Python call per step. Repeats take turns (each starts with a different setup) and the
script reports, per setup, the best run (least disturbed), the median run, and the median of the
trainer / setup ratios within a repeat. Target: trainer >= 1.00x the loop and >= model.fit.

    .venv/bin/python benchmarks/trainer_efficiency.py [--model densenet28 --image-size 64]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import time
from pathlib import Path

from common import (
    best_and_median,
    finish,
    machine,
    pin_threads,
    semhpc_command,
    start,
    synth_and_ingest,
    worker_json,
    write_json,
)

SETUPS = ("semhpc train", "GradientTape loop", "model.fit")
STEP_INTERVAL = 10  # trainer steps per metrics.jsonl step record


def main() -> None:
    args = parse_args()
    if args.worker:
        print(json.dumps(WORKERS[args.worker](args)))
        return
    data = synth_and_ingest(Path(args.work), args.per_class, "256x192", "128x96")
    cores = sorted(os.sched_getaffinity(0))[:args.threads]
    before = machine()
    rates = {name: [] for name in SETUPS}
    steady = []
    for repeat in range(args.repeats):
        # Each repeat starts with a different setup, so none always runs first (or last) in a repeat.
        for name in SETUPS[repeat % len(SETUPS):] + SETUPS[:repeat % len(SETUPS)]:
            if name == "semhpc train":
                trainer_rate, trainer_steady = run_trainer(args, data, cores)
                rates[name].append(trainer_rate)
                steady.append(trainer_steady)
            else:
                document = worker_json(__file__, [WORKER_OF[name], *worker_arguments(args, data)], cores)
                rates[name].append(document["images_per_sec"])
        print(f"repeat {repeat + 1}: " + ", ".join(f"{name} {values[-1]:.1f}" for name, values in rates.items())
              + f" img/s (trainer within epochs: {steady[-1]:.1f})", flush=True)
    results = {name: best_and_median(values) for name, values in rates.items()}
    trainer = results["semhpc train"]
    # Ratios within a repeat compare runs minutes apart: less exposed to slow drifts of the machine's load.
    paired = {name: statistics.median(t / v for t, v in zip(rates["semhpc train"], values))
              for name, values in rates.items()}
    print(f"\n{args.model} {args.image_size} px, batch {args.batch_size}, {args.threads} thread(s), epochs 2-{args.epochs}, "
          f"load average {before['load_average_1min']:.1f} before, {os.getloadavg()[0]:.1f} after")
    print(f"{'setup':<18} {'best img/s':>10} {'median':>8} {'trainer / this: best, median, paired median':>45}")
    for name, result in results.items():
        print(f"{name:<18} {result['best']:>10.1f} {result['median']:>8.1f} "
              f"{trainer['best'] / result['best']:>29.2f}, {trainer['median'] / result['median']:.2f}, {paired[name]:.2f}")
    print(f"semhpc train within epochs (median of {STEP_INTERVAL}-step intervals, epoch starts left out): "
          f"best {max(steady):.1f}, median {statistics.median(steady):.1f} img/s")
    print("target: semhpc train >= 1.00x the loop and >= model.fit")
    write_json({"benchmark": "trainer_efficiency", "settings": vars(args), "machine": before,
                "load_average_after": os.getloadavg()[0], "results": results, "paired_median_ratio": paired,
                "trainer_within_epochs": best_and_median(steady)}, args.json)


def run_trainer(args, data: Path, cores: list[int]) -> tuple[float, float]:
    """`semhpc train` on `cores` in a fresh run dir: (images/sec of epochs 2.. from metrics.jsonl,
    median images/sec of its 10-step intervals that do not start an epoch)."""
    run_dir = Path(args.work) / "trainer-run"
    shutil.rmtree(run_dir, ignore_errors=True)
    sets = [f"data.dir={data}", f"run.dir={run_dir}", f"model.name={args.model}",
            f"data.image_size={args.image_size}", f"train.batch_size={args.batch_size}",
            f"train.epochs={args.epochs}", f"train.threads={args.threads}", "train.weight_decay=0",
            "data.cache=true", "data.augment=true", f"train.log_every={STEP_INTERVAL}"]
    finish(start(semhpc_command(["train", *[word for s in sets for word in ("--set", s)]]), cores))
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    images = records[0]["steps_per_epoch"] * records[0]["global_batch"]
    timed = [r for r in records if r["kind"] == "epoch"][1:]
    steps = [r for r in records if r["kind"] == "step" and r["epoch"] > 1]
    # The first record of an epoch covers its start (new dataset, first batches): left out.
    steady = [r["images_per_sec"] for previous, r in zip(steps, steps[1:]) if previous["epoch"] == r["epoch"]]
    return images * len(timed) / sum(epoch["epoch_time"] for epoch in timed), statistics.median(steady)


def worker_arguments(args, data: Path) -> list[str]:
    return ["--data", str(data), "--model", args.model, "--image-size", str(args.image_size),
            "--batch-size", str(args.batch_size), "--epochs", str(args.epochs), "--threads", str(args.threads)]


def prepare(args):
    """(model, optimizer, dataset, images per epoch) exactly as the trainer builds them."""
    pin_threads(args.threads)
    import tensorflow as tf

    from semhpc.config import load_config
    from semhpc.data import pipeline
    from semhpc.data.categories import CATEGORIES
    from semhpc.model import registry
    from semhpc.runtime.schedule import make_optimizer, make_schedule

    cfg = load_config(None, [f"train.batch_size={args.batch_size}"])
    manifest = pipeline.load_manifest(args.data)
    steps = pipeline.steps_per_epoch(manifest, "train", args.batch_size, 1)
    tf.keras.utils.set_random_seed(0)
    model = registry.build(args.model, num_classes=len(CATEGORIES), input_size=args.image_size)
    optimizer = make_optimizer(cfg.train, make_schedule(cfg.train, steps, 1))
    spec = registry.get_spec(args.model)
    dataset = pipeline.make_dataset(args.data, "train", args.image_size, args.batch_size, training=True,
                                    preprocess_fn=lambda images: registry.preprocess(images, spec), cache=True)
    return model, optimizer, dataset, steps * args.batch_size


def loop_worker(args) -> dict:
    """The minimal hand-written loop: a tf.function step with GradientTape, one pass per epoch."""
    import tensorflow as tf

    model, optimizer, dataset, images = prepare(args)
    loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return loss

    times = []
    for _ in range(args.epochs):
        started = time.perf_counter()
        for x, y in dataset:
            loss = step(x, y)
        float(loss)
        times.append(time.perf_counter() - started)
    return {"images_per_sec": images * (args.epochs - 1) / sum(times[1:])}


def fit_worker(args) -> dict:
    """tf.keras `model.fit` on the same dataset, timed from the end of epoch 1 to the end of the last.

    Timing between epoch ends (not from on_epoch_begin) counts what fit does before that callback
    (a new iterator, the shuffle buffer filling), as the trainer's and the loop's epoch times do.
    """
    import tensorflow as tf

    model, optimizer, dataset, images = prepare(args)
    model.compile(optimizer=optimizer, loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))

    class EpochEnds(tf.keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times = []

        def on_epoch_end(self, epoch, logs=None):
            self.times.append(time.perf_counter())

    ends = EpochEnds()
    model.fit(dataset, epochs=args.epochs, verbose=0, callbacks=[ends])
    return {"images_per_sec": images * (args.epochs - 1) / (ends.times[-1] - ends.times[0])}


WORKERS = {"loop": loop_worker, "fit": fit_worker}
WORKER_OF = {"GradientTape loop": "loop", "model.fit": "fit"}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--model", default="densenet28")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run; the first is not timed (default 3)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="cores = threads (default all)")
    parser.add_argument("--per-class", type=int, default=100, help="synthetic images per class (default 100)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--work", default="/tmp/semhpc-trainer-bench", help="scratch folder (the dataset is kept)")
    parser.add_argument("--json", help="also write the results here")
    return parser.parse_args()


if __name__ == "__main__":
    main()
