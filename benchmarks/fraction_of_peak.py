"""Fraction of peak: achieved training FLOP/s against the matmul FLOP/s TensorFlow reaches on the
same cores, in float32 and in bfloat16 mixed precision (`train.precision=mixed`, bfloat16 on
CPUs with AVX512_BF16/AMX).

  peak       a 2048 x 2048 matmul in float32 (and bfloat16 for reference), one process pinned to
             N cores with N threads (`semhpc.bench.flops.matmul_flops`)
  training   `semhpc bench --mode train` pinned to the same N cores with N threads;
             achieved FLOP/s = 3 x forward FLOPs per image x images/sec (`semhpc.bench.flops`)
Both precisions are compared with the float32 matmul peak: the question is how much of what the
cores do on the best-case kernel the training step gets. Target: >= 0.6 for DenseNet-28 at
224 px in float32 (plain TensorFlow measured 0.6-0.7 here).

    .venv/bin/python benchmarks/fraction_of_peak.py [--model densenet28 --image-size 224]
"""

from __future__ import annotations

import argparse
import json
import os

from common import bench_json, machine, pin_threads, worker_json, write_json

TARGET = 0.6
PRECISIONS = {"float32": "fp32", "bfloat16 mixed": "mixed"}


def main() -> None:
    args = parse_args()
    if args.worker:
        pin_threads(args.threads)
        from semhpc.bench.flops import matmul_flops

        print(json.dumps({"flops": matmul_flops(dtype=args.dtype)}))
        return
    forward = forward_flops(args.model, args.image_size)
    before = machine()
    cores = sorted(os.sched_getaffinity(0))
    rows = []
    for count in range(1, len(cores) + 1):
        pinned = cores[:count]
        peak = {dtype: worker_json(__file__, ["--threads", str(count), "--dtype", dtype], pinned)["flops"]
                for dtype in ("float32", "bfloat16")}
        for name, precision in PRECISIONS.items():
            doc = bench_json(["--model", args.model, "--image-size", str(args.image_size), "--batch-size",
                              str(args.batch_size), "--batches", str(args.batches), "--warmup", "3", "--mode", "train",
                              "--threads", str(count), "--set", f"train.precision={precision}"], pinned)
            rate = doc["train"]["images_per_sec_total"]
            achieved = 3 * forward * rate
            rows.append({"cores": count, "precision": name, "policy": doc["precision"], "images_per_sec": rate,
                         "training_gflops": achieved / 1e9, "matmul_float32_gflops": peak["float32"] / 1e9,
                         "matmul_bfloat16_gflops": peak["bfloat16"] / 1e9,
                         "fraction_of_float32_peak": achieved / peak["float32"]})
            print(f"{count} core(s), {name:<15} ({doc['precision']}): {rate:6.1f} img/s = {achieved / 1e9:6.1f} GFLOP/s; "
                  f"matmul float32 {peak['float32'] / 1e9:6.1f}, bfloat16 {peak['bfloat16'] / 1e9:6.1f} GFLOP/s; "
                  f"fraction {achieved / peak['float32']:.2f}", flush=True)
    print(f"\n{args.model} {args.image_size} px: {forward / 1e9:.3f} GFLOPs forward per image; "
          f"load average {before['load_average_1min']:.1f} before, {os.getloadavg()[0]:.1f} after; "
          f"target float32 >= {TARGET} of the float32 matmul peak")
    write_json({"benchmark": "fraction_of_peak", "settings": vars(args), "machine": before,
                "load_average_after": os.getloadavg()[0], "forward_flops_per_image": forward, "rows": rows}, args.json)


def forward_flops(model_name: str, image_size: int) -> int:
    import tensorflow as tf

    from semhpc.bench.flops import model_flops
    from semhpc.model import registry

    with tf.Graph().as_default():  # shapes only, no weights allocated
        return model_flops(registry.build(model_name, input_size=image_size))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--dtype", help=argparse.SUPPRESS)
    parser.add_argument("--model", default="densenet28")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--json", help="also write the results here")
    return parser.parse_args()


if __name__ == "__main__":
    main()
