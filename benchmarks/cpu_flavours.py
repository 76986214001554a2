"""The cpu image (stock TensorFlow, oneDNN) against the mkl image (plus Intel Extension for
TensorFlow), side by side in one run (issue 23).

The two images are one build apart (containers/build.sh --flavor cpu / mkl share every layer up
to Horovod; the mkl image adds the extension), so what differs is the extension alone. Every point
runs in a fresh container of each image, the two taking turns, bound to the same cores
(`docker run --cpuset-cpus`), so a busy spell on a shared machine hits both alike:

  bench     `semhpc bench --mode train` on synthetic batches: DenseNet-28 at 224 px and Inception-v3
            at 299 px (the models' own sizes), 1 and 2 cores, float32 and bfloat16
            (`train.precision=mixed`: bfloat16 on CPUs with AVX512_BF16/AMX, float32 elsewhere)
  train     a short `semhpc train` of DenseNet-28 on a small synthetic dataset (same data, seed and
            settings in both): the test accuracies must agree within --tolerance
  classify  `semhpc classify` of synthetic 1024 x 768 TIFFs on 2 cores with the bundle of the cpu
            image's training: images/s, and how many predictions the two images share

It prints each figure and the ratio mkl / cpu, and writes them to --out. Exit status 1 when the
accuracies disagree.

    benchmarks/cpu_flavours.py                        # quick (default): a few timed batches, minutes
    benchmarks/cpu_flavours.py --full --repeats 3     # batch 16, 20 timed batches, every point 3 times
    benchmarks/cpu_flavours.py --cpu-image semhpc:cpu --mkl-image semhpc:mkl   # the images (defaults)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from common import machine, write_json  # noqa: E402

# (model, its input size, batch per point in quick mode, cores of quick mode)
MODELS = [("densenet28", 224, 8, (1, 2)), ("inception_v3", 299, 2, (2,))]
PRECISIONS = {"float32": "fp32", "bfloat16": "mixed"}
FULL_BATCH, FULL_BATCHES, QUICK_BATCHES = 16, 20, 3
TRAIN_SETTINGS = ["--set", "model.name=densenet28", "--set", "data.image_size=32", "--set", "train.epochs=3",
                  "--set", "train.batch_size=16", "--set", "data.augment=false", "--set", "train.seed=7",
                  "--set", "train.precision=fp32", "--set", "train.log_every=1000"]


def main() -> int:
    args = parse_args()
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    work.chmod(0o777)  # the images run as their non-root user
    images = {"cpu": args.cpu_image, "mkl": args.mkl_image}
    load_before = os.getloadavg()[0]
    document = {"machine": machine(), "images": images, "quick": not args.full, "repeats": args.repeats,
                "doctor": {flavour: doctor(image) for flavour, image in images.items()}}
    itex = document["doctor"]["mkl"]
    print(f"mkl image: {itex['cpu_extension']}")
    if not itex["itex_loaded"]:
        print("the extension does not load in the mkl image: every mkl figure below is stock TensorFlow's")
    document["bench"] = bench_points(images, args, work)
    document["train"], bundle = train_both(images, work, args.tolerance)
    document["classify"] = classify_both(images, work, bundle, args.classify_images)
    document["load_average_1min"] = {"before": load_before, "after": os.getloadavg()[0]}
    report(document)
    write_json(document, args.out)
    return 0 if document["train"]["agree"] else 1


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu-image", default="semhpc:cpu")
    parser.add_argument("--mkl-image", default="semhpc:mkl")
    parser.add_argument("--full", action="store_true",
                        help=f"every model at 1 and 2 cores, batch {FULL_BATCH}, {FULL_BATCHES} timed batches "
                             f"(default: quick, {QUICK_BATCHES} timed batches, smaller batches, Inception-v3 "
                             "on 2 cores only)")
    parser.add_argument("--models", default=",".join(model for model, *_ in MODELS),
                        help="models to bench, comma separated (default: all of them)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of every point in each image (default 1)")
    parser.add_argument("--tolerance", type=float, default=0.1,
                        help="largest test-accuracy difference that still agrees (default 0.1)")
    parser.add_argument("--classify-images", type=int, default=200, help="TIFFs per classify run (default 200)")
    parser.add_argument("--work", default="/tmp/semhpc-cpu-flavours", help="scratch folder (emptied first)")
    parser.add_argument("--out", default=str(REPO / "docs" / "figures" / "cpu_flavours.json"))
    return parser.parse_args()


def docker_run(image: str, command: list[str], work: Path, cores: int = 2) -> str:
    """`command` in a fresh container of `image` on the first `cores` cores, WORK mounted at /work."""
    cpus = ",".join(str(core) for core in sorted(os.sched_getaffinity(0))[:cores])
    result = subprocess.run(["docker", "run", "--rm", "--cpuset-cpus", cpus, "-v", f"{work}:/work", "-w", "/work",
                             "-e", "TF_CPP_MIN_LOG_LEVEL=2", "--entrypoint", command[0], image, *command[1:]],
                            capture_output=True, text=True, timeout=3600)
    if result.returncode != 0:
        sys.exit(f"failed in {image}: {' '.join(command)}\n{result.stderr[-3000:]}")
    return result.stdout


def doctor(image: str) -> dict:
    report = json.loads(docker_run(image, ["semhpc", "doctor", "--json"], Path("/tmp")))
    return {key: report.get(key) for key in ("tensorflow", "itex", "itex_loaded", "itex_backend", "cpu_extension",
                                             "cpu_bf16")}


def bench_points(images: dict, args, work: Path) -> list[dict]:
    points = []
    for model, size, quick_batch, quick_cores in [entry for entry in MODELS if entry[0] in args.models.split(",")]:
        batch = FULL_BATCH if args.full else quick_batch
        batches = FULL_BATCHES if args.full else QUICK_BATCHES
        for cores in (1, 2) if args.full else quick_cores:
            for dtype, precision in PRECISIONS.items():
                command = ["semhpc", "bench", "--model", model, "--image-size", str(size), "--batch-size", str(batch),
                           "--batches", str(batches), "--warmup", "1", "--mode", "train", "--threads", str(cores),
                           "--set", f"train.precision={precision}", "--json"]
                runs = {flavour: [] for flavour in images}
                for _ in range(args.repeats):
                    for flavour, image in images.items():  # taking turns
                        document = json.loads(docker_run(image, command, work, cores))
                        runs[flavour].append(document["train"]["images_per_sec_total"])
                point = {"model": model, "image_size": size, "batch_size": batch, "batches": batches,
                         "cores": cores, "dtype": dtype, "policy": document["precision"],
                         **{f"{flavour}_images_per_sec": statistics.median(values) for flavour, values in runs.items()},
                         "runs": runs}
                point["ratio"] = point["mkl_images_per_sec"] / point["cpu_images_per_sec"]
                print(f"bench {model} {size} px, batch {batch}, {cores} core(s), {dtype}: cpu "
                      f"{point['cpu_images_per_sec']:.2f}, mkl {point['mkl_images_per_sec']:.2f} img/s, "
                      f"ratio {point['ratio']:.2f}", flush=True)
                points.append(point)
    return points


def train_both(images: dict, work: Path, tolerance: float) -> tuple[dict, str]:
    """The same short training in both images; the cpu run's bundle (/work/bundle) for classify."""
    docker_run(images["cpu"], ["bash", "-c", "semhpc synth tiffs --per-class 24 --size 64x48 --seed 5 >/dev/null && "
                               "semhpc ingest tiffs dataset --size 64x48 --shards-per-split 2 >/dev/null"], work)
    result = {}
    for flavour, image in images.items():
        script = (f"semhpc train --config /opt/semhpc/configs/demo.yaml --set run.dir=run-{flavour} "
                  f"--set data.dir=dataset {' '.join(TRAIN_SETTINGS)} >/dev/null && cat run-{flavour}/test_metrics.json")
        test = json.loads(docker_run(image, ["bash", "-c", script], work))
        result[flavour] = {"accuracy": test["accuracy"], "loss": test.get("loss")}
        print(f"train {flavour}: test accuracy {test['accuracy']:.3f}", flush=True)
    result["difference"] = abs(result["mkl"]["accuracy"] - result["cpu"]["accuracy"])
    result["tolerance"] = tolerance
    result["agree"] = result["difference"] <= tolerance
    docker_run(images["cpu"], ["semhpc", "export", "run-cpu", "bundle"], work)
    return result, "bundle"


def classify_both(images: dict, work: Path, bundle: str, count: int) -> dict:
    """`semhpc classify` of `count` synthetic 1024 x 768 TIFFs on 2 cores in each image."""
    docker_run(images["cpu"], ["semhpc", "synth", "big", "--per-class", str(max(1, count // 10)), "--size", "1024x768",
                               "--seed", "9"], work)
    result, labels = {}, {}
    for flavour, image in images.items():
        script = (f"semhpc classify --model {bundle} --input big --out classified-{flavour} >/dev/null && "
                  f"cat classified-{flavour}/throughput.json")
        throughput = json.loads(docker_run(image, ["bash", "-c", script], work))
        result[f"{flavour}_images_per_sec"] = throughput["images_per_sec"]
        rows = [json.loads(line) for line in (work / f"classified-{flavour}" / "predictions.jsonl").read_text().splitlines()]
        labels[flavour] = {row["path"]: row["top1_label"] for row in rows}
        print(f"classify {flavour}: {throughput['images']} images, {throughput['images_per_sec']:.2f} img/s", flush=True)
    result["ratio"] = result["mkl_images_per_sec"] / result["cpu_images_per_sec"]
    shared = [path for path in labels["cpu"] if labels["mkl"].get(path) == labels["cpu"][path]]
    result["same_top1"] = f"{len(shared)}/{len(labels['cpu'])}"
    return result


def report(document: dict) -> None:
    print(f"\n{'point':<46}{'cpu img/s':>10}{'mkl img/s':>10}{'mkl/cpu':>9}")
    for p in document["bench"]:
        name = f"bench {p['model']} {p['image_size']}px b{p['batch_size']} {p['cores']}c {p['dtype']}"
        print(f"{name:<46}{p['cpu_images_per_sec']:>10.2f}{p['mkl_images_per_sec']:>10.2f}{p['ratio']:>9.2f}")
    c = document["classify"]
    print(f"{'classify 1024x768 TIFFs, 2 cores':<46}{c['cpu_images_per_sec']:>10.2f}{c['mkl_images_per_sec']:>10.2f}"
          f"{c['ratio']:>9.2f}   same top-1 {c['same_top1']}")
    t = document["train"]
    print(f"short training, test accuracy: cpu {t['cpu']['accuracy']:.3f}, mkl {t['mkl']['accuracy']:.3f} "
          f"({'agree' if t['agree'] else 'DISAGREE'} within {t['tolerance']})")
    load = document["load_average_1min"]
    print(f"load average (1 min): {load['before']:.1f} before, {load['after']:.1f} after, "
          f"{document['machine']['cores']} cores")


if __name__ == "__main__":
    sys.exit(main())
