"""The tensor layouts a benchmark can time, and where each one is valid.

Kept apart from the workload (which imports TensorFlow) so that `semhpc bench --help` and
`semhpc submit --job bench` list and check the choices without loading TensorFlow.
"""

from __future__ import annotations

from semhpc.utils.errors import SemhpcError

DATA_FORMATS = ("channels_last", "channels_first")


def check_data_format(data_format: str, has_gpu: bool) -> None:
    """NCHW only on GPUs: TensorFlow's CPU max pooling refuses NCHW, and with oneDNN (the default)
    it runs but returns wrong values, so a CPU benchmark in NCHW would time a broken network."""
    if data_format not in DATA_FORMATS:
        raise SemhpcError(f"--data-format {data_format}: must be one of {', '.join(DATA_FORMATS)}")
    if data_format == "channels_first" and not has_gpu:
        raise SemhpcError("--data-format channels_first needs a GPU: TensorFlow's CPU kernels are NHWC only "
                          "(docs/background.md: Scaling: NCHW on GPU, NHWC on CPU)")
