"""`semhpc profile`: profile N steps of real training and split every step into per-layer rows.

On each rank (one process, or every rank under mpirun):
1. `warmup` steps compile the step and warm caches; they are not recorded.
2. `rounds` times: a block of steps without the profiler, timed (the unprofiled step time), then
   a block with the TensorFlow profiler on, timed and traced into TRACE_DIR/rank<R>/round<K>/.
   Alternating the blocks keeps slow drifts of a shared machine out of the overhead ratio;
   overhead = profiled step time / unprofiled step time, both measured here, in the same run.
3. Each traced step is split into rows that add up to its wall time (`attribution.py`).

Why the TensorFlow profiler: it records every op with a few hundred nanoseconds of cost, inside
the compiled step, on every thread; op names carry the layer scopes, and asynchronous Horovod ops
show when their results were pending. Timing layers from Python instead would need a sync per
layer, which is what made the thesis' first profiler 3.4x slower and miss half the step.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import tensorflow as tf

from semhpc.bench.attribution import OpNamer, attribute_step
from semhpc.bench.throughput import wait_for
from semhpc.bench.trace import INPUT_MARKER, STEP_MARKER, read_steps
from semhpc.model import registry
from semhpc.utils.progress import progress


@dataclass
class RankLayerTimes:
    """One rank's measurements: perf-counter step times and the traced steps' rows."""

    rank: int
    unprofiled: list[float] = field(default_factory=list)  # seconds per step, profiler off
    profiled: list[float] = field(default_factory=list)  # seconds per step, profiler on
    iterations: list[dict] = field(default_factory=list)  # {"iteration", "rows": {(layer, phase): s}}


def time_layers(workload, batches, steps: int, warmup: int, rounds: int, trace_dir: str | Path,
                     rank: int = 0, show_progress: bool = True) -> RankLayerTimes:
    """Profile `steps` training steps of `workload` on `batches` (an iterator of (images, labels))."""
    result = RankLayerTimes(rank)
    bar = progress(total=warmup + 2 * steps, desc="profile", enabled=show_progress, unit="step")
    run_steps(workload.train_step, batches, warmup, 0, bar)
    namer = step_namer(workload, *next(batches))
    done = 0
    for round_index, block in enumerate(_split(steps, rounds)):
        result.unprofiled += run_steps(workload.train_step, batches, block, done, bar)
        logdir = Path(trace_dir) / f"rank{rank}" / f"round{round_index}"
        tf.profiler.experimental.start(str(logdir), options=tf.profiler.experimental.ProfilerOptions(
            host_tracer_level=2, python_tracer_level=0, device_tracer_level=0))
        try:
            result.profiled += run_steps(workload.train_step, batches, block, done, bar)
        finally:
            tf.profiler.experimental.stop()
        done += block
    bar.close()
    result.iterations = [{"iteration": step.step_num, "rows": attribute_step(step, namer)}
                         for step in read_steps(Path(trace_dir) / f"rank{rank}")]
    return result


def run_steps(train_step, batches, count: int, first: int, bar=None) -> list[float]:
    """Run `count` steps, each marked for the profiler; their wall times in seconds."""
    walls = []
    for iteration in range(first, first + count):
        started = time.perf_counter()
        with tf.profiler.experimental.Trace(STEP_MARKER, step_num=iteration, _r=1):
            with tf.profiler.experimental.Trace(INPUT_MARKER):
                images, labels = next(batches)
            wait_for(train_step(images, labels))
        walls.append(time.perf_counter() - started)
        if bar is not None:
            bar.update(1)
    return walls


def _split(steps: int, rounds: int) -> list[int]:
    """`steps` as `rounds` nearly equal blocks (no empty block)."""
    rounds = max(1, min(rounds, steps))
    return [steps // rounds + (1 if i < steps % rounds else 0) for i in range(rounds)]


def step_namer(workload, images, labels) -> OpNamer:
    """An OpNamer that knows the step's graph and which graph inputs are which variables."""
    graph = workload.train_step.get_concrete_function(images, labels).graph
    inputs = {op.name: (op.type, [(tensor.op.name, tensor.value_index) for tensor in op.inputs])
              for op in graph.get_operations()}
    scope = f"{workload.optimizer.name}/"
    handles = {id(v.handle): v.name for v in workload.model.variables}
    handles.update({id(v.handle): v.name if v.name.startswith(scope) else scope + v.name
                    for v in workload.optimizer.variables})
    variables = {internal.op.name: handles[id(external)] for external, internal in graph.captures
                 if id(external) in handles}
    return OpNamer([layer.name for layer in workload.model.layers], workload.model.name,
                   workload.optimizer.name, inputs, variables)


def names_only_namer(model_name: str, optimizer_name: str) -> OpNamer:
    """An OpNamer for a trace without its graph (`--analyse` of a TensorBoard profile): layers are
    named from op names alone, so nameless ops stay unattributed."""

    with tf.Graph().as_default():  # only the layer names are needed: allocate nothing
        model = registry.build(model_name)
    return OpNamer([layer.name for layer in model.layers], model.name, optimizer_name)
