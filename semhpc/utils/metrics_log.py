"""metrics.jsonl: one JSON object per line, appended and flushed as training goes.

Line-per-record means a live run can be read at any moment (a reader skips a half-written last
line), and a crash loses at most the line being written.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from semhpc.utils.atomic import write_text
from semhpc.utils.files import read_input_text


class MetricsLog:
    """Append-only writer. `keep_until_step` (on resume) first drops records past the checkpoint,
    so the resumed run's records continue without duplicated or missing steps. With
    `tensorboard_dir`, the numbers of step/epoch/test records are also TensorBoard scalars
    (`step/loss`, `epoch/val_accuracy`, ...), so `tensorboard --logdir RUN` shows the same curves."""

    def __init__(self, path: str | Path, keep_until_step: int | None = None,
                 tensorboard_dir: str | Path | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if keep_until_step is not None and self.path.exists():
            kept = [r for r in read_metrics(self.path) if r.get("step", 0) <= keep_until_step]
            write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        self._fh = open(self.path, "a", buffering=1)
        self._tensorboard = None
        if tensorboard_dir is not None:
            import tensorflow as tf

            self._tensorboard = tf.summary.create_file_writer(str(tensorboard_dir))

    def write(self, **record) -> None:
        record.setdefault("time", time.time())
        self._fh.write(json.dumps(record) + "\n")
        self._fh.flush()
        if self._tensorboard is not None and record.get("kind") in _SCALAR_KINDS:
            self._write_scalars(record)

    def _write_scalars(self, record: dict) -> None:
        import tensorflow as tf

        with self._tensorboard.as_default(step=int(record["step"])):
            for key, value in record.items():
                if key not in _NOT_SCALARS and isinstance(value, (int, float)) and not isinstance(value, bool):
                    tf.summary.scalar(f"{record['kind']}/{key}", value)
        self._tensorboard.flush()

    def close(self) -> None:
        self._fh.close()
        if self._tensorboard is not None:
            self._tensorboard.close()


_SCALAR_KINDS = ("step", "epoch", "test")
_NOT_SCALARS = ("kind", "step", "time")


def read_metrics(path: str | Path) -> list[dict]:
    """All complete records; a truncated last line (run still writing) is ignored."""
    records = []
    for line in read_input_text(path, "metrics log").splitlines():  # a FIFO is refused, never read
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records
