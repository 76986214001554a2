"""Input pipeline against training, per core: does TFRecord -> decode -> resize -> augment keep up?

  pipeline   `pipeline.make_dataset(training=True, augment=True, cache=False)` over the training shards, as
             the trainer reads them (stored PNGs decoded every time, epochs streamed back to back),
             preprocessed for the model;
             one process pinned to one core with one TensorFlow thread; images/sec over
             `--batches` batches after 2 warmup batches
  training   `semhpc bench --mode train --threads 1` of the model, pinned to one core
Target: pipeline >= 5x training per core for DenseNet-28 at 224 px, so that a rank needs less
than a fifth of a core to feed itself.

The dataset is synthetic SEM TIFFs ingested at `--stored-size` (the pipeline's decode cost grows
with it; the real archive is ingested from 1024 x 768 at the size the model needs).

    .venv/bin/python benchmarks/input_pipeline.py [--model densenet28 --image-size 224]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from common import bench_json, best_and_median, machine, pin_threads, synth_and_ingest, worker_json, write_json

TARGET = 5.0


def main() -> None:
    args = parse_args()
    if args.worker:
        print(json.dumps(pipeline_worker(args)))
        return
    data = synth_and_ingest(Path(args.work), args.per_class, "1024x768", args.stored_size)
    core = [sorted(os.sched_getaffinity(0))[0]]
    before = machine()
    rates = {"pipeline": [], "training": []}
    for repeat in range(args.repeats):
        rates["pipeline"].append(worker_json(__file__, ["--data", str(data), *shared_arguments(args)], core)
                                 ["images_per_sec"])
        doc = bench_json(["--model", args.model, "--image-size", str(args.image_size), "--batch-size",
                          str(args.batch_size), "--batches", str(args.training_batches), "--warmup", "2",
                          "--mode", "train", "--threads", "1"], core)
        rates["training"].append(doc["train"]["images_per_sec_total"])
        print(f"repeat {repeat + 1}: pipeline {rates['pipeline'][-1]:.1f}, training {rates['training'][-1]:.1f} "
              f"img/s per core", flush=True)
    results = {name: best_and_median(values) for name, values in rates.items()}
    ratio = {statistic: results["pipeline"][statistic] / results["training"][statistic] for statistic in ("best", "median")}
    print(f"\n{args.model} {args.image_size} px, batch {args.batch_size}, stored {args.stored_size}, one core each, "
          f"load average {before['load_average_1min']:.1f} before, {os.getloadavg()[0]:.1f} after")
    print(f"pipeline {results['pipeline']['best']:.1f} img/s, training {results['training']['best']:.1f} img/s (best runs): "
          f"ratio {ratio['best']:.1f}x (medians {ratio['median']:.1f}x); target >= {TARGET}x")
    write_json({"benchmark": "input_pipeline", "settings": vars(args), "machine": before,
                "load_average_after": os.getloadavg()[0], "results": results, "ratio": ratio}, args.json)


def shared_arguments(args) -> list[str]:
    return ["--model", args.model, "--image-size", str(args.image_size), "--batch-size", str(args.batch_size),
            "--batches", str(args.batches)]


def pipeline_worker(args) -> dict:
    """Images/sec of the training pipeline on this process's single thread."""
    pin_threads(1)
    import tensorflow as tf

    from semhpc.data import pipeline
    from semhpc.model import registry

    spec = registry.get_spec(args.model)
    steps = pipeline.steps_per_epoch(pipeline.load_manifest(args.data), "train", args.batch_size, 1)
    dataset = pipeline.make_dataset(args.data, "train", args.image_size, args.batch_size, training=True,
                                    preprocess_fn=lambda images: registry.preprocess(images, spec),
                                    augment=True, cache=False, epochs=-(-(args.batches + 2) // steps))
    options = tf.data.Options()
    options.threading.private_threadpool_size = 1
    batches = iter(dataset.with_options(options))
    for _ in range(2):
        next(batches)
    started = time.perf_counter()
    for _ in range(args.batches):
        images, _ = next(batches)
    images.numpy()
    return {"images_per_sec": args.batches * args.batch_size / (time.perf_counter() - started)}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--model", default="densenet28")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--batches", type=int, default=40, help="pipeline batches timed (default 40)")
    parser.add_argument("--training-batches", type=int, default=10, help="training batches timed (default 10)")
    parser.add_argument("--stored-size", default="320x240", help="ingest size WxH (default 320x240)")
    parser.add_argument("--per-class", type=int, default=20, help="synthetic images per class (default 20)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--work", default="/tmp/semhpc-pipeline-bench", help="scratch folder (the dataset is kept)")
    parser.add_argument("--json", help="also write the results here")
    return parser.parse_args()


if __name__ == "__main__":
    main()
