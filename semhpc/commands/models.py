"""`semhpc models`: the model registry at a glance (what `model.name` in a config can be)."""

from __future__ import annotations

import json

HELP = "List the models: default input size, parameters with a 10-class head, conv+FC layers, preprocessing."


def add_arguments(parser) -> None:
    parser.add_argument("--json", action="store_true",
                        help="print a JSON list of {name, input_size, params, layers}")


def main(args) -> int:
    import tensorflow as tf

    from semhpc.model import registry
    from semhpc.utils.progress import progress

    # Counting builds each graph in a throwaway tf.Graph, where keras logs deprecation notices.
    tf.get_logger().setLevel("ERROR")
    rows = [registry.describe(name) for name in progress(registry.MODELS, desc="building", unit="model")]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'name':<14}{'input':>6}{'params':>14}{'layers':>8}  {'preprocessing':<15}description")
    for row in rows:
        spec = registry.get_spec(row["name"])
        print(f"{row['name']:<14}{row['input_size']:>6}{row['params']:>14,}{row['layers']:>8}  "
              f"{spec.preprocessing:<15}{spec.description}")
    return 0
