"""Numeric precision and compiler settings that depend on the hardware, decided in one place.

`train.precision: mixed` means float16 compute with dynamic loss scaling on GPUs, and bfloat16 on
CPUs that have native bfloat16 arithmetic (AVX512_BF16 or AMX, as `semhpc doctor` reports):
there it is about 1.5x faster than float32 for DenseNet-28 (docs/benchmarks.md), and bfloat16
keeps float32's exponent range, so it needs no loss scaling. On a CPU without those units
bfloat16 is emulated and slower, so `mixed` falls back to float32 with one printed line instead
of failing. Variables stay float32 in every policy; the logits are cast to float32 for the loss.

One exception to bfloat16 compute on CPUs: oneDNN's batch normalization is slow when the channel
count is not a multiple of 16 (its 512-bit vectors hold 16 float32 or 32 bfloat16 values), and
slowest in bfloat16: for DenseNet-28's 120 channels at 56 x 56, forward + backward (with the
ReLU) took 345 ms in bfloat16 against 62 ms at 128 channels and 187 ms in float32 (one core,
under load). DenseNet's concatenations give 10 of DenseNet-28's 28 BatchNormalization layers
such counts (growth rate 56). Those layers compute in float32 (`bfloat16_model`); the casts
around them cost less than the slow bfloat16 kernel saves (docs/benchmarks.md: Fraction of peak).
"""

from __future__ import annotations

from dataclasses import dataclass

from semhpc.runtime.stack import cpu_flags


@dataclass(frozen=True)
class Precision:
    policy: str  # a tf.keras.mixed_precision policy name
    loss_scaling: bool
    note: str | None  # why the request was changed, for the log; None when honoured


def resolve_precision(requested: str, has_gpu: bool, cpu_has_bf16: bool | None = None) -> Precision:
    """The Keras policy for `train.precision` on this hardware."""
    if requested == "fp32":
        return Precision("float32", False, None)
    if has_gpu:
        return Precision("mixed_float16", True, None)
    if cpu_has_bf16 is None:
        cpu_has_bf16 = bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})
    if cpu_has_bf16:
        return Precision("mixed_bfloat16", False, None)
    return Precision("float32", False,
                     "train.precision=mixed: no GPU and no AVX512_BF16/AMX on this CPU; training in float32")


def apply_precision(precision: Precision) -> None:
    """Set the global Keras policy; call before building the model."""
    import tensorflow as tf

    tf.keras.mixed_precision.set_global_policy(precision.policy)


# oneDNN's fast batch-normalization kernels want the channel count to be a multiple of this.
BATCHNORM_CHANNEL_MULTIPLE = 16


def bfloat16_model(model):
    """`model` with its BatchNormalization layers whose channel count is not a multiple of 16 in
    float32 (the same weights), when the global policy is mixed_bfloat16; else `model` itself.

    Keras casts their bfloat16 inputs to float32 and the next layer casts back. Built by
    `clone_model` from the layers' configs, so names, weights and checkpoints stay the same.
    """
    import tensorflow as tf

    if tf.keras.mixed_precision.global_policy().name != "mixed_bfloat16":
        return model
    slow = {layer.name for layer in model.layers if isinstance(layer, tf.keras.layers.BatchNormalization)
            and layer.input_shape[-1] % BATCHNORM_CHANNEL_MULTIPLE}
    if not slow:
        return model

    def clone(layer):
        config = layer.get_config()
        if layer.name in slow:
            config["dtype"] = "float32"
        return layer.__class__.from_config(config)

    converted = tf.keras.models.clone_model(model, clone_function=clone)
    converted.set_weights(model.get_weights())
    return converted


def enable_xla() -> None:
    """XLA auto-clustering: TensorFlow compiles the clusters of ops it can and leaves the rest
    (Horovod's allreduce ops among them) to the normal runtime, so it composes with Horovod."""
    import tensorflow as tf

    tf.config.optimizer.set_jit("autoclustering")
