"""`semhpc export RUN_DIR OUT`: turn a training run into a self-contained inference bundle."""

from __future__ import annotations

HELP = "Export a trained run as an inference bundle (Keras model, classes, input size, preprocessing, metrics)."


def add_arguments(parser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run directory written by `semhpc train`")
    parser.add_argument("out", metavar="OUT", help="bundle folder to create")
    parser.add_argument("--force", action="store_true", help="replace OUT if it exists")


def main(args) -> int:
    from semhpc.classify.bundle import export_bundle

    bundle = export_bundle(args.run_dir, args.out, force=args.force)
    training = bundle.manifest["training"]
    accuracy = training["test_accuracy"]
    print(f"{bundle.path}: {bundle.model_version}, {len(bundle.classes)} classes, input {bundle.input_size} px, "
          f"weights {training['weights']}, "
          + (f"test accuracy {accuracy:.3f}" if accuracy is not None else "no test metrics in the run"))
    return 0
