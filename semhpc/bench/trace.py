"""Read a TensorFlow profiler trace into what the per-layer attribution needs, step by step.

`tf.profiler.experimental` writes `LOGDIR/plugins/profile/<run>/<host>.xplane.pb` (the same
files TensorBoard's profiler reads). On the host plane every thread is a line of timed events:
- training steps are "train" events with a `step_num` (the marker `layer_timing.py` and Keras
  `model.fit` put around each step), and `input_wait` events mark the wait for the next batch;
- each TensorFlow op that runs is an event named "<op name>:<op type>", on the thread that ran it;
- an asynchronous op (Horovod's allreduce) has a "ExecutorState::ProcessAsync::Start" event when
  it is launched and a linked "ExecutorState::ProcessAsync::Done" event when it completes, so
  [start, done] is the time its result was pending.
Threads of tf.data ("tf_data...") are left out: their ops prepare later batches in the background
and show up in a step only as the input wait.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from pathlib import Path

STEP_MARKER = "train"
INPUT_MARKER = "input_wait"
_OP_EVENT = re.compile(r"^([^\s:]+):([A-Za-z_]\w*)$")
_ASYNC_START = "ExecutorState::ProcessAsync::Start"
_ASYNC_DONE = "ExecutorState::ProcessAsync::Done"


@dataclass(frozen=True)
class Interval:
    start: float  # nanoseconds on the trace clock
    end: float
    thread: int = 0
    name: str = ""  # the op name for op events


@dataclass
class StepTrace:
    """One profiled training step: its window and what ran inside it."""

    step_num: int
    start: float
    end: float
    ops: list[Interval] = field(default_factory=list)
    input_waits: list[Interval] = field(default_factory=list)
    allreduce_pending: list[Interval] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return (self.end - self.start) / 1e9


def trace_files(logdir: str | Path) -> list[Path]:
    return sorted(Path(logdir).glob("**/plugins/profile/*/*.xplane.pb"))


def read_steps(logdir: str | Path) -> list[StepTrace]:
    """Every marked step of every trace under `logdir`, in step order."""
    steps = []
    for path in trace_files(logdir):
        steps += _steps_of_file(path)
    return sorted(steps, key=lambda step: (step.step_num, step.start))


def _steps_of_file(path: Path) -> list[StepTrace]:
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    space.ParseFromString(path.read_bytes())
    steps, ops, waits, async_starts, async_done = [], [], [], {}, {}
    for plane in space.planes:
        if plane.name != "/host:CPU":
            continue
        stat_names = {key: meta.name for key, meta in plane.stat_metadata.items()}
        for line in plane.lines:
            if line.name.startswith("tf_data"):
                continue
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                start = line.timestamp_ns + event.offset_ps / 1000
                interval = Interval(start, start + event.duration_ps / 1000, line.id)
                if name == STEP_MARKER:
                    stats = _stats(event, stat_names)
                    steps.append(StepTrace(int(stats.get("step_num", len(steps))), interval.start, interval.end))
                elif name == INPUT_MARKER:
                    waits.append(interval)
                elif name == _ASYNC_START:
                    stats = _stats(event, stat_names)
                    op = Interval(interval.start, interval.end, line.id, str(stats.get("name", "")))
                    ops.append(op)
                    if "_p" in stats and str(stats.get("kernel_type", "")).startswith("Horovod"):
                        async_starts[stats["_p"]] = op
                elif name == _ASYNC_DONE:
                    stats = _stats(event, stat_names)
                    if "_c" in stats:
                        async_done[stats["_c"]] = interval.start
                else:
                    match = _OP_EVENT.match(name)
                    if match:
                        ops.append(Interval(interval.start, interval.end, line.id, match.group(1)))
    pending = [Interval(op.start, async_done[key], op.thread, op.name)
               for key, op in async_starts.items() if key in async_done]
    for intervals in (ops, waits, pending):
        intervals.sort(key=lambda i: i.start)
    for step in steps:
        step.ops = _inside(ops, step)
        step.input_waits = _inside(waits, step)
        step.allreduce_pending = _inside(pending, step)
    return steps


def _stats(event, stat_names: dict) -> dict:
    values = {}
    for stat in event.stats:
        kind = stat.WhichOneof("value")
        values[stat_names.get(stat.metadata_id, "")] = (
            stat_names.get(stat.ref_value) if kind == "ref_value" else getattr(stat, kind))
    return values


def _inside(intervals: list[Interval], step: StepTrace) -> list[Interval]:
    """The intervals that start within the step's window (sorted by start), clipped to it.

    Steps run one after the other (each waits for its result), so nothing starts before a step
    and runs on into it.
    """
    first = bisect.bisect_left(intervals, step.start, key=lambda i: i.start)
    last = bisect.bisect_left(intervals, step.end, key=lambda i: i.start)
    return [Interval(i.start, min(i.end, step.end), i.thread, i.name) for i in intervals[first:last]]
