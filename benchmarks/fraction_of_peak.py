"""Fraction of peak: achieved training FLOP/s against the matmul FLOP/s TensorFlow reaches on the
same cores, in float32 and in bfloat16 mixed precision (`train.precision=mixed`, bfloat16 on
CPUs with AVX512_BF16/AMX).

  peak       a 2048 x 2048 matmul in float32 (and bfloat16 for reference), one process pinned to
             N cores with N threads (`semhpc.bench.flops.matmul_flops`)
  training   `semhpc bench --mode train` pinned to the same N cores with N threads;
             achieved FLOP/s = 3 x forward FLOPs per image x images/sec (`semhpc.bench.flops`)
  plain TF   the same model, optimizer and synthetic batch under Keras' mixed_bfloat16 policy in a
             minimal GradientTape step (no semhpc step: no weight decay, one-hot or accuracy, and
             every layer in bfloat16), what bfloat16 gives in TensorFlow without semhpc
All setups are compared with the float32 matmul peak: the question is how much of what the
cores do on the best-case kernel the training step gets. Target: >= 0.6 for DenseNet-28 at
224 px in float32 (plain TensorFlow measured 0.6-0.7 here). Each repeat runs every setup once,
in turn, on the same cores; the bfloat16 speed-ups over float32 are taken within a repeat
(paired), so a slow drift of a loaded machine's load does not decide them.

    .venv/bin/python benchmarks/fraction_of_peak.py [--model densenet28 --image-size 224 --repeats 3]
    taskset -c 1 .venv/bin/python benchmarks/fraction_of_peak.py    # one core only
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

from common import bench_json, machine, pin_threads, worker_json, write_json

TARGET = 0.6
SETUPS = ("float32", "bfloat16 mixed", "bfloat16 plain TF")
PRECISIONS = {"float32": "fp32", "bfloat16 mixed": "mixed"}  # train.precision of the semhpc setups


def main() -> None:
    args = parse_args()
    if args.worker == "matmul":
        pin_threads(args.threads)
        from semhpc.bench.flops import matmul_flops

        print(json.dumps({"flops": matmul_flops(dtype=args.dtype)}))
        return
    if args.worker == "plain":
        print(json.dumps(plain_worker(args)))
        return
    forward = forward_flops(args.model, args.image_size)
    before = machine()
    cores = sorted(os.sched_getaffinity(0))
    rows = []
    for count in range(1, len(cores) + 1):
        pinned = cores[:count]
        peak = {dtype: worker_json(__file__, ["matmul", "--threads", str(count), "--dtype", dtype],
                                   pinned)["flops"] for dtype in ("float32", "bfloat16")}
        rates = {name: [] for name in SETUPS}
        for repeat in range(args.repeats):
            for name in SETUPS[repeat % len(SETUPS):] + SETUPS[:repeat % len(SETUPS)]:  # each repeat starts elsewhere
                rates[name].append(setup_rate(args, name, count, pinned))
            print(f"{count} core(s), repeat {repeat + 1}: "
                  + ", ".join(f"{name} {values[-1]:.1f}" for name, values in rates.items()) + " img/s", flush=True)
        for name, values in rates.items():
            rate = statistics.median(values)
            achieved = 3 * forward * rate
            paired = statistics.median(v / f for v, f in zip(values, rates["float32"]))
            rows.append({"cores": count, "setup": name, "images_per_sec_runs": values, "images_per_sec": rate,
                         "speedup_over_float32_paired_median": paired, "training_gflops": achieved / 1e9,
                         "matmul_float32_gflops": peak["float32"] / 1e9, "matmul_bfloat16_gflops": peak["bfloat16"] / 1e9,
                         "fraction_of_float32_peak": achieved / peak["float32"]})
            print(f"{count} core(s), {name:<17}: median {rate:6.1f} img/s = {achieved / 1e9:6.1f} GFLOP/s, "
                  f"{paired:.2f}x float32 (paired median); matmul float32 {peak['float32'] / 1e9:6.1f}, "
                  f"bfloat16 {peak['bfloat16'] / 1e9:6.1f} GFLOP/s; fraction {achieved / peak['float32']:.2f}",
                  flush=True)
    print(f"\n{args.model} {args.image_size} px: {forward / 1e9:.3f} GFLOPs forward per image; "
          f"load average {before['load_average_1min']:.1f} before, {os.getloadavg()[0]:.1f} after; "
          f"target float32 >= {TARGET} of the float32 matmul peak")
    write_json({"benchmark": "fraction_of_peak", "settings": vars(args), "machine": before,
                "load_average_after": os.getloadavg()[0], "forward_flops_per_image": forward, "rows": rows}, args.json)


def setup_rate(args, name: str, count: int, pinned: list[int]) -> float:
    """Training images/sec of one setup in a fresh process pinned to `pinned` with `count` threads."""
    if name in PRECISIONS:
        doc = bench_json(["--model", args.model, "--image-size", str(args.image_size), "--batch-size",
                          str(args.batch_size), "--batches", str(args.batches), "--warmup", "3", "--mode", "train",
                          "--threads", str(count), "--set", f"train.precision={PRECISIONS[name]}"], pinned)
        return doc["train"]["images_per_sec_total"]
    return worker_json(__file__, ["plain", "--threads", str(count), "--model", args.model,
                                  "--image-size", str(args.image_size), "--batch-size", str(args.batch_size),
                                  "--batches", str(args.batches)], pinned)["images_per_sec"]


def plain_worker(args) -> dict:
    """Keras' mixed_bfloat16 policy and a minimal GradientTape step, timed like `semhpc bench`."""
    pin_threads(args.threads)
    import tensorflow as tf

    from semhpc.bench.throughput import time_batches
    from semhpc.bench.workload import synthetic_batch
    from semhpc.config import load_config
    from semhpc.data.categories import CATEGORIES
    from semhpc.model import registry
    from semhpc.runtime.schedule import make_optimizer, make_schedule

    cfg = load_config(None, [f"train.batch_size={args.batch_size}"])
    tf.keras.mixed_precision.set_global_policy("mixed_bfloat16")
    tf.keras.utils.set_random_seed(cfg.train.seed)
    # The builder itself: registry.build would keep some BatchNormalization layers in float32.
    model = registry.get_spec(args.model).builder(num_classes=len(CATEGORIES), input_size=args.image_size)
    optimizer = make_optimizer(cfg.train, make_schedule(cfg.train, 100, 1))
    loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    images, labels = synthetic_batch(args.batch_size, args.image_size, registry.get_spec(args.model), "channels_last",
                                     cfg.train.seed)

    optimizer.build(model.trainable_variables)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, tf.cast(model(x, training=True), tf.float32))
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return loss

    for _ in range(3):  # warmup, as the semhpc setups (the first call traces the step)
        step(images, labels).numpy()
    started = time.time()
    seconds = time_batches(lambda: step(images, labels), args.batches, "plain", show_progress=False)
    return {"images_per_sec": args.batch_size / statistics.fmean(seconds), "window": [started, time.time()]}


def forward_flops(model_name: str, image_size: int) -> int:
    import tensorflow as tf

    from semhpc.bench.flops import model_flops
    from semhpc.model import registry

    with tf.Graph().as_default():  # shapes only, no weights allocated
        return model_flops(registry.build(model_name, input_size=image_size))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", choices=("matmul", "plain"), help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--dtype", help=argparse.SUPPRESS)
    parser.add_argument("--model", default="densenet28")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3, help="runs of every setup per core count (default 3)")
    parser.add_argument("--json", help="also write the results here")
    return parser.parse_args()


if __name__ == "__main__":
    main()
