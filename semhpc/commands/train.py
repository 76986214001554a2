"""`semhpc train --config C`: Horovod training, as one process or one rank under mpirun."""

from __future__ import annotations

HELP = "Train a model on an ingested dataset (run under `semhpc launch` for several ranks)."


def add_config_arguments(parser) -> None:
    """--config and --set, shared by every command that takes a run config."""
    parser.add_argument("--config", help="YAML run config (see configs/); defaults when omitted")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one config value, e.g. --set train.batch_size=32 (repeatable)")


def add_arguments(parser) -> None:
    add_config_arguments(parser)


def main(args) -> int:
    from semhpc.config import load_config
    from semhpc.runtime.trainer import train

    train(load_config(args.config, args.overrides))
    return 0
