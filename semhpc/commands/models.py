"""`semhpc models`: the model registry at a glance (what `model.name` in a config can be)."""

from __future__ import annotations

import json

HELP = ("List the models: default input size, parameters with a 10-class head and on the thesis' basis, "
        "conv+FC layers, preprocessing.")


def add_arguments(parser) -> None:
    parser.add_argument("--json", action="store_true",
                        help="print a JSON list of {name, input_size, params, layers, thesis_basis}; "
                             "thesis_basis = {classes, aux_logits, input_size, trainable, params}: the count "
                             "as the thesis' Table 2.1 made it (see `registry.thesis_basis`)")


def main(args) -> int:
    import tensorflow as tf

    from semhpc.model import registry
    from semhpc.utils.progress import progress

    # Counting builds each graph in a throwaway tf.Graph, where keras logs deprecation notices.
    tf.get_logger().setLevel("ERROR")
    rows = [{**registry.describe(name), "thesis_basis": registry.thesis_basis(name)}
            for name in progress(registry.MODELS, desc="building", unit="model")]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'name':<20}{'input':>6}{'params':>14}{'layers':>8}  {'preprocessing':<15}{'thesis basis':<30}"
          "description")
    for row in rows:
        spec = registry.get_spec(row["name"])
        basis = row["thesis_basis"]
        thesis = f"{basis['trainable'] / 1e6:.2f}M ({basis['classes']} cl{', aux' if basis['aux_logits'] else ''})"
        print(f"{row['name']:<20}{row['input_size']:>6}{row['params']:>14,}{row['layers']:>8}  "
              f"{spec.preprocessing:<15}{thesis:<30}{spec.description}")
    return 0
