"""`semhpc train --config C`: Horovod training, as one process or one rank under mpirun."""

from __future__ import annotations

from pathlib import Path

from semhpc.utils.errors import SemhpcError

HELP = "Train a model on an ingested dataset (run under `semhpc launch` for several ranks)."


def add_config_arguments(parser) -> None:
    """--config and --set, shared by every command that takes a run config."""
    parser.add_argument("--config", help="YAML run config (see configs/); defaults when omitted")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one config value, e.g. --set train.batch_size=32 (repeatable)")


def add_arguments(parser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--resume", metavar="RUN_DIR",
                        help="continue RUN_DIR from its newest checkpoint with its saved config (--set still applies)")


def main(args) -> int:
    from semhpc.config import load_config
    from semhpc.runtime.trainer import train

    if args.resume:
        if args.config:
            raise SemhpcError("--resume uses RUN_DIR/config.yaml; do not pass --config as well")
        cfg = load_config(Path(args.resume) / "config.yaml", [*args.overrides, f"run.dir={args.resume}"])
        train(cfg, resume=True)
    else:
        train(load_config(args.config, args.overrides))
    return 0
