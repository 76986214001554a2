"""Split each profiled step's wall time into rows, so that the rows add up to the step exactly.

A row is (layer, phase). Layer rows use the registry's blocks (`registry.layer_block`), phases
forward, backward and optimizer (the update of that layer's weights). The other rows:
  loss          forward/backward of the loss
  optimizer     optimizer work shared by all layers (learning rate, step counter)
  allreduce     communication: Horovod ops, and the time the step waits for a pending allreduce
  input_wait    waiting for the next batch from the input pipeline
  framework     no op running and nothing pending: "launch" before the step's first op and after
                its last (Python calling the compiled step, the executor setting up and returning),
                "between ops" for the executor's gaps between ops
  unattributed  ops that could not be named
Only the first five kinds count as covered; framework and unattributed are what the profile
cannot explain (`coverage` in layer_timing_report.py).

How an op gets its row. TensorFlow names ops by the name scopes they were created in: forward
ops `<model>/<layer>/...`, their gradients `gradient_tape/<model>/<layer>/...`, the update ops
`<optimizer>/...`. Ops whose name has no layer (the optimizer's per-variable ops, the sums of
gradients where a layer's output feeds several layers, the weight decay terms) take the layer of
their nearest input in the step's graph that has one, including the variables they read.

How time is split. Each instant of the step goes to the ops running at that instant, shared
equally when ops overlap on several threads; an instant with no op goes to input_wait,
allreduce or framework, in that order of precedence. Nested op events count once (innermost).
"""

from __future__ import annotations

from collections import defaultdict, deque

from semhpc.bench.trace import Interval, StepTrace
from semhpc.model.registry import layer_block

FORWARD, BACKWARD, OPTIMIZER = "forward", "backward", "optimizer"
SHARED_OPTIMIZER = ("optimizer", OPTIMIZER)
COMMUNICATION = ("allreduce", "communication")
INPUT_WAIT = ("input_wait", "input")
FRAMEWORK_LAUNCH = ("framework", "launch")  # before the step's first op and after its last
FRAMEWORK_BETWEEN_OPS = ("framework", "between ops")  # the executor's gaps between ops
UNATTRIBUTED = ("unattributed", "unattributed")
SPECIAL_KINDS = {"loss": "loss", "optimizer": "optimizer", "allreduce": "communication",
                 "input_wait": "input", "framework": "framework", "unattributed": "unattributed"}
COVERED_KINDS = ("layer", "loss", "optimizer", "communication", "input")
GRADIENT_SCOPE = "gradient_tape/"
LOSS_WORDS = ("crossentropy", "one_hot")
COMMUNICATION_WORDS = ("Horovod", "DistributedGradientTape")
_MAX_INPUT_SEARCH = 64  # graph nodes visited to find a nameless op's layer


def row_kind(layer: str) -> str:
    """'layer' for a model block, else the special row's kind."""
    return SPECIAL_KINDS.get(layer, "layer")


class OpNamer:
    """Maps op names of one training step to rows.

    layer_names: every layer of the model; model_name: its name scope; optimizer_name: the
    optimizer's name scope; graph: the step's graph as {op name: (op type, [(input op name,
    output index), ...])}, None to name by op names only; variables: {graph op name of a captured
    variable: variable name}, optimizer variables prefixed by the optimizer's scope.
    """

    def __init__(self, layer_names, model_name: str, optimizer_name: str, graph: dict | None = None,
                 variables: dict | None = None):
        self.layers = set(layer_names)
        self.model_scope = f"{model_name}/"
        self.optimizer_scope = f"{optimizer_name}/"
        self.graph = graph or {}
        self.variables = variables or {}
        self._rows: dict[str, tuple[str, str]] = {}

    def row(self, op_name: str) -> tuple[str, str]:
        if op_name not in self._rows:
            self._rows[op_name] = self._name(op_name)
        return self._rows[op_name]

    def _name(self, op_name: str) -> tuple[str, str]:
        if any(word in op_name for word in COMMUNICATION_WORDS):
            return COMMUNICATION
        phase, rest = self._phase(op_name)
        block = self._scoped_block(rest)
        if block:
            return block, phase
        if any(word in rest.split("/", 1)[0] for word in LOSS_WORDS):
            return "loss", phase
        found = self._from_inputs(op_name)
        if found is None:
            return SHARED_OPTIMIZER if phase == OPTIMIZER else UNATTRIBUTED
        if found == SHARED_OPTIMIZER:
            return found
        block, input_phase = found
        return block, input_phase if phase == FORWARD else phase

    def _phase(self, op_name: str) -> tuple[str, str]:
        """(phase, name without the gradient scope)."""
        if op_name.startswith(GRADIENT_SCOPE):
            return BACKWARD, op_name[len(GRADIENT_SCOPE):]
        return (OPTIMIZER if op_name.startswith(self.optimizer_scope) else FORWARD), op_name

    def _scoped_block(self, name: str) -> str | None:
        return self._block(name[len(self.model_scope):]) if name.startswith(self.model_scope) else None

    def _block(self, path: str) -> str | None:
        """The block of the longest layer name that `path` (or a suffix of it) starts with."""
        parts = path.split("/")
        for first in range(len(parts)):
            for last in range(len(parts), first, -1):
                if "/".join(parts[first:last]) in self.layers:
                    return layer_block("/".join(parts[first:last]))
        return None

    def _from_inputs(self, op_name: str) -> tuple[str, str] | None:
        """(block, phase) of the nearest input of `op_name` that belongs to a layer; else
        SHARED_OPTIMIZER when it reads an optimizer variable (the step counter); else None.

        The search follows tensors: through an IdentityN (which passes every gradient of the step
        at once) only the input feeding the output actually used is followed.
        """
        seen, queue = set(), deque(self._inputs(op_name, -1))
        reads_optimizer_state = False
        while queue and len(seen) < _MAX_INPUT_SEARCH:
            tensor = queue.popleft()
            if tensor in seen:
                continue
            seen.add(tensor)
            name, index = tensor
            if name in self.variables:
                variable = self.variables[name]
                block = self._block(variable)
                if block:
                    return block, FORWARD
                reads_optimizer_state |= variable.startswith(self.optimizer_scope)
                continue
            phase, rest = self._phase(name)
            block = self._scoped_block(rest)
            if block:
                return block, BACKWARD if phase == BACKWARD else FORWARD
            queue.extend(self._inputs(name, index))
        return SHARED_OPTIMIZER if reads_optimizer_state else None

    def _inputs(self, op_name: str, output_index: int) -> list[tuple[str, int]]:
        op_type, inputs = self.graph.get(op_name, ("", []))
        if op_type == "IdentityN" and 0 <= output_index < len(inputs):
            return [inputs[output_index]]
        return list(inputs)


def attribute_step(step: StepTrace, namer: OpNamer) -> dict[tuple[str, str], float]:
    """Seconds per row for one step; the values add up to `step.seconds`."""
    pieces = innermost_pieces(step.ops)
    first_op = min((piece.start for piece in pieces), default=step.end)
    last_op = max((piece.end for piece in pieces), default=step.end)
    marks = []  # (time, change, what): what is a row for op pieces, else "input" or "pending"
    for piece in pieces:
        row = namer.row(piece.name)
        marks += [(piece.start, 1, row), (piece.end, -1, row)]
    for what, intervals in (("input", step.input_waits), ("pending", step.allreduce_pending)):
        for interval in intervals:
            marks += [(interval.start, 1, what), (interval.end, -1, what)]
    marks.sort(key=lambda mark: (mark[0], mark[1]))  # at equal times, ends before starts
    marks.append((step.end, 0, None))

    seconds: dict[tuple[str, str], float] = defaultdict(float)
    running_rows: dict[tuple[str, str], int] = {}  # row -> op pieces running now
    waiting = {"input": 0, "pending": 0}
    now = step.start
    for time, change, what in marks:
        span = (time - now) / 1e9
        if span > 0:
            idle = FRAMEWORK_BETWEEN_OPS if first_op <= now < last_op else FRAMEWORK_LAUNCH
            _charge(seconds, span, running_rows, waiting, idle)
            now = time
        if what in waiting:
            waiting[what] += change
        elif what is not None:
            running_rows[what] = running_rows.get(what, 0) + change
            if not running_rows[what]:
                del running_rows[what]
    return dict(seconds)


def _charge(seconds: dict, span: float, running_rows: dict, waiting: dict, idle: tuple[str, str]) -> None:
    """Give `span` seconds to the running ops (shared by count), or else to what the step waits
    on, or else to the `idle` framework row."""
    running = sum(running_rows.values())
    if running:
        for row, count in running_rows.items():
            seconds[row] += span * count / running
    elif waiting["input"]:
        seconds[INPUT_WAIT] += span
    elif waiting["pending"]:
        seconds[COMMUNICATION] += span
    else:
        seconds[idle] += span


def innermost_pieces(ops: list[Interval]) -> list[Interval]:
    """Per thread, the op events cut so that an event enclosing others keeps only its own time."""
    by_thread = defaultdict(list)
    for op in ops:
        by_thread[op.thread].append(op)
    pieces = []
    for events in by_thread.values():
        # At equal times: closes before opens, and the outer of two events opening together first.
        marks = sorted([(e.start, 1, -e.end, i) for i, e in enumerate(events)]
                       + [(e.end, 0, 0, i) for i, e in enumerate(events)])
        open_events: list[int] = []
        now = 0.0
        for time, opens, _, index in marks:
            if open_events and time > now:
                innermost = events[open_events[-1]]
                pieces.append(Interval(now, time, innermost.thread, innermost.name))
            now = time
            if opens:
                open_events.append(index)
            else:
                open_events.remove(index)
    return pieces
