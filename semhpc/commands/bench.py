"""`semhpc bench`: training throughput on synthetic data, scaling sweeps, and storage reads.

    semhpc bench --model densenet28 --image-size 224 --batch-size 16     one point (this process,
                                                                          or every rank under mpirun)
    semhpc bench --protocol convnet                                       the thesis protocol
    semhpc bench --sweep 1,2,4 --out DIR                                  rank sweep (CSV, JSON, PNG)
    semhpc bench --threads 1,2 --out DIR                                  thread sweep
    semhpc bench io PATH [PATH ...] --readers 1,2,4                       read+decode throughput

Settings come from the run config (`--config`, `--set`) and the flags override them; without a
config the image size is the model's default input size.
"""

from __future__ import annotations

import json

from semhpc.bench import horovod_ranks, io
from semhpc.bench.data_format import DATA_FORMATS
from semhpc.commands.train import add_config_arguments
from semhpc.utils import atomic, options

HELP = "Benchmark training throughput, rank and thread scaling, or storage read throughput."

# The thesis' convnet-benchmarks protocol (docs/background.md: Scaling): AlexNet, batch 128, 227 px, 50 batches.
PROTOCOLS = {"convnet": {"model": "alexnet", "batch_size": 128, "image_size": 227, "batches": 50, "mode": "both"}}
DEFAULT_BATCHES = 20
MAX_READERS = 256  # concurrent reader processes of `bench io`
DEFAULT_WARMUP = 3


def add_workload_arguments(parser) -> None:
    """--config/--set and the flags that override the timed workload (`resolve_config` applies
    them); `semhpc profile` times the same workload and takes the same ones."""

    add_config_arguments(parser)
    parser.add_argument("--model", help="registry model (default: the config's, densenet28)")
    parser.add_argument("--image-size", type=options.bounded_int(options.MIN_SIDE, options.MAX_INPUT_SIZE),
                        help="input size in pixels (default: the config's, or the model's)")
    parser.add_argument("--batch-size", type=options.bounded_int(1, options.MAX_BATCH),
                        help="images per rank per step (default: the config's, 16)")


def add_arguments(parser) -> None:
    from semhpc.bench.throughput import MODES

    add_workload_arguments(parser)
    parser.add_argument("--batches", type=options.bounded_int(1, 100_000),
                        help=f"timed batches per phase (default {DEFAULT_BATCHES})")
    parser.add_argument("--warmup", type=options.bounded_int(1, 10_000),
                        help=f"untimed batches first, >= 1 (default {DEFAULT_WARMUP})")
    parser.add_argument("--mode", choices=MODES,
                        help="forward, train (forward+backward+update) or both (default both; sweeps: train)")
    parser.add_argument("--data-format", choices=DATA_FORMATS, default="channels_last",
                        help="tensor layout: channels_last (NHWC, fast on CPUs) or channels_first (NCHW)")
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS),
                        help="convnet: AlexNet, batch 128, 227 px, 50 batches (flags still override)")
    parser.add_argument("--threads", help="intra-op threads per rank; a list like 1,2 runs a thread sweep "
                                          "(default: one per core the rank is bound to)")
    parser.add_argument("--sweep", metavar="RANKS", help="rank counts like 1,2,4: a scaling sweep under mpirun")
    parser.add_argument("--cores-per-rank", type=options.bounded_int(1, options.MAX_CORES),
                        default=1, help="cores bound to each rank in --sweep (default 1)")
    parser.add_argument("--json", action="store_true", help="print the JSON document instead of the table")
    parser.add_argument("--out", help="write the JSON document here (a sweep: a folder for sweep.csv/json/png)")
    targets = parser.add_subparsers(dest="target", metavar="io")
    io = targets.add_parser("io", help="read+decode throughput of SEM TIFFs or TFRecords under PATH",
                            description="Read and decode the files under PATH with 1, 2, ... concurrent "
                                        "reader processes, to compare storage (local disk, NFS, Lustre). "
                                        "Several PATHs (copies of the same files) take turns at each reader "
                                        "count and are compared with the first.")
    io.add_argument("path", nargs="+", help="folder (or file) of .tif/.tiff images or .tfrecord shards; "
                                            "several: copies of the same files on each storage, compared")
    io.add_argument("--readers", default="1,2", help="concurrent reader counts (default 1,2)")
    io.add_argument("--json", dest="io_json", action="store_true", help="print the JSON document")
    io.add_argument("--out", dest="io_out", help="write the JSON document here")


def main(args) -> int:
    if args.target == "io":
        return _io(args)
    from semhpc.bench.sweep import parse_counts

    threads = parse_counts(args.threads, "--threads", options.MAX_CORES) if args.threads else []
    if args.sweep and len(threads) > 1:
        from semhpc.utils.errors import SemhpcError

        raise SemhpcError("--sweep and a --threads list: sweep one thing at a time")
    if args.sweep:
        return _sweep(args, "rank_sweep", parse_counts(args.sweep, "--sweep", options.MAX_RANKS), threads)
    if len(threads) > 1:
        return _sweep(args, "thread_sweep", threads)
    return _point(args, threads[0] if threads else 0)


def point_settings(args, sweeping: bool = False) -> dict:
    """Model, sizes, batches and mode from the flags, else the protocol, else the defaults."""
    protocol = PROTOCOLS.get(args.protocol, {})

    def pick(name, default):
        value = getattr(args, name)
        return value if value is not None else protocol.get(name, default)

    settings = {"model": pick("model", None), "image_size": pick("image_size", None),
                "batch_size": pick("batch_size", None), "batches": pick("batches", DEFAULT_BATCHES),
                "warmup": pick("warmup", DEFAULT_WARMUP), "mode": pick("mode", "train" if sweeping else "both"),
                "data_format": args.data_format}
    return settings  # --batches and --warmup are range-checked by argparse (>= 1: the first batch compiles)


def resolve_config(args, settings: dict, threads: int = 0):
    """The run config with the flags applied; fills the settings' model and sizes from it."""
    from semhpc.config import load_config
    from semhpc.model import registry

    overrides = list(args.overrides)
    for key, setting in (("model.name", "model"), ("train.batch_size", "batch_size"), ("data.image_size", "image_size")):
        if settings[setting] is not None:
            overrides.append(f"{key}={settings[setting]}")
    if settings["image_size"] is None and not args.config:
        name = settings["model"] or load_config(None, overrides).model.name
        overrides.append(f"data.image_size={registry.get_spec(name).default_input_size}")
    if threads:
        overrides.append(f"train.threads={threads}")
    cfg = load_config(args.config, overrides)
    settings.update(model=cfg.model.name, image_size=cfg.data.image_size, batch_size=cfg.train.batch_size)
    return cfg


def _point(args, threads: int) -> int:
    from semhpc.bench.throughput import bench_document, format_table, time_phases
    from semhpc.bench.workload import build_workload

    settings = point_settings(args)
    cfg = resolve_config(args, settings, threads)
    ranks = horovod_ranks.start(cfg.train.threads)
    workload = build_workload(cfg, settings["data_format"], ranks.size)
    settings["precision"] = workload.precision.policy
    times = time_phases(workload, settings["mode"], settings["batches"], settings["warmup"], ranks.is_root)
    everyone = horovod_ranks.gather(times)
    if ranks.is_root:
        document = bench_document(settings, everyone, ranks.threads)
        _report(document, args.json, args.out, format_table)
    return 0


def _sweep(args, kind: str, counts: list[int], threads_per_rank: list[int] = ()) -> int:
    """A rank sweep (`threads_per_rank`: one count, or none for one thread per bound core) or a
    thread sweep over `counts`."""
    from semhpc.bench import sweep

    settings = point_settings(args, sweeping=True)
    resolve_config(args, settings)  # validate the settings before starting processes
    point_args = _point_arguments(args, settings)
    if threads_per_rank:
        point_args += ["--threads", str(threads_per_rank[0])]
    if kind == "rank_sweep":
        documents = sweep.rank_sweep(counts, point_args, args.cores_per_rank)
    else:
        documents = sweep.thread_sweep(counts, point_args)
    by = "workers" if kind == "rank_sweep" else "threads"
    table = sweep.sweep_table(documents, by)
    out = sweep.write_sweep(args.out or f"runs/bench-sweep-{settings['model']}", kind, table, documents)
    if args.json:
        import json

        print(json.dumps({"kind": kind, "rows": table.to_dict("records")}, indent=2))
    else:
        print(sweep.format_sweep(table, by))
        print(f"wrote {out}/sweep.csv, sweep.json, sweep.png")
    return 0


def _point_arguments(args, settings: dict) -> list[str]:
    """The `semhpc bench` arguments of one sweep point: the resolved settings, config and --set."""
    point = ["--model", settings["model"], "--image-size", str(settings["image_size"]),
             "--batch-size", str(settings["batch_size"]), "--batches", str(settings["batches"]),
             "--warmup", str(settings["warmup"]), "--mode", settings["mode"], "--data-format", settings["data_format"]]
    if args.config:
        point += ["--config", args.config]
    for override in args.overrides:
        point += ["--set", override]
    return point


def _io(args) -> int:
    from semhpc.bench.sweep import parse_counts

    readers = parse_counts(args.readers, "--readers", MAX_READERS)
    if len(args.path) > 1:
        document = io.comparison_document(io.compare_paths(args.path, readers))
        _report(document, args.io_json, args.io_out, io.format_comparison)
        return 0
    files = io.find_files(args.path[0])
    document = io.io_document(args.path[0], files, io.io_sweep(files, readers))
    _report(document, args.io_json, args.io_out, io.format_io)
    return 0


def _report(document: dict, as_json: bool, out: str | None, formatter) -> None:
    if out:
        atomic.write_json(out, document)
    print(json.dumps(document, indent=2) if as_json else formatter(document), flush=True)
