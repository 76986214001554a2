"""The Horovod trainer under real `mpirun -np 2`: replicas agree, only rank 0 writes, resume is exact,
a dead rank does not hang the job, and a tiny run learns."""

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli_runs import run_semhpc as semhpc
from cli_runs import synth_and_ingest
from semhpc.runtime.launcher import mpirun_command
from semhpc.utils.metrics_log import read_metrics

pytestmark = pytest.mark.mpi

TINY = [
    "model.name=densenet28", "data.image_size=32", "train.batch_size=4", "train.epochs=2",
    "train.log_every=1", "data.augment=false",
]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return synth_and_ingest(tmp_path_factory.mktemp("trainer-data"))[1]


def train_args(dataset, run_dir, *extra):
    sets = [*TINY, f"data.dir={dataset}", f"run.dir={run_dir}", *extra]
    return ["train", *[arg for s in sets for arg in ("--set", s)]]


def steps_per_epoch(dataset, ranks=2, batch=4):
    manifest = json.loads((Path(dataset) / "manifest.json").read_text())
    n_train = sum(manifest["counts"]["train"].values())
    return n_train // (ranks * batch)


def test_two_ranks_agree_and_only_rank0_writes(dataset, tmp_path):
    """MPMD launch: rank 0 works in r0/, rank 1 in r1/; a relative run dir would land in r1/ if
    rank 1 wrote anything."""
    (tmp_path / "r0").mkdir()
    (tmp_path / "r1").mkdir()
    # train.eval_split=test: the thesis' protocol, epoch-end evaluations score the test split.
    single = mpirun_command(1, train_args(dataset, "run", "train.eval_split=test"))
    app_at = single.index(sys.executable)
    options, app = single[3:app_at], single[app_at:]
    cmd = ["mpirun", *options, "-np", "1", "--wdir", str(tmp_path / "r0"), *app,
           ":", "-np", "1", "--wdir", str(tmp_path / "r1"), *app]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]

    assert list((tmp_path / "r1").iterdir()) == []
    run = tmp_path / "r0" / "run"
    assert {p.name for p in run.iterdir()} >= {"config.yaml", "metrics.jsonl", "checkpoints", "status.json",
                                               "latest_weights.h5", "final_weights.h5", "test_metrics.json",
                                               "tensorboard"}
    assert json.loads((run / "status.json").read_text())["state"] == "finished"
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    result = json.loads((run / "test_metrics.json").read_text())
    fingerprints = result["replica_fingerprints"]
    assert len(fingerprints) == 2 and fingerprints[0] == fingerprints[1]
    assert result["steps"] == 2 * steps_per_epoch(dataset)

    records = read_metrics(run / "metrics.jsonl")
    assert records[0]["kind"] == "start" and records[0]["ranks"] == 2
    steps = [r["step"] for r in records if r["kind"] == "step"]
    assert steps == list(range(1, result["steps"] + 1))          # log_every=1: each step once
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert [e["epoch"] for e in epochs] == [1, 2]
    assert all(e["images_per_sec"] > 0 and 0 <= e["val_accuracy"] <= 1 for e in epochs)
    # The last epoch-end evaluation scored the test split with the final weights: the test result.
    assert [e["eval_split"] for e in epochs] == ["test", "test"]
    assert epochs[-1]["val_accuracy"] == result["accuracy"]
    assert sum(m["support"] for m in result["per_class"].values()) == result["images"]

    # `semhpc eval` in one process scores the saved weights exactly as the 2-rank run did.
    out = semhpc("eval", str(run), "--json")
    assert out.returncode == 0, out.stderr[-3000:]
    evaluation = json.loads((run / "eval.json").read_text())
    assert evaluation["confusion"] == result["confusion"]
    assert evaluation["accuracy"] == result["accuracy"]
    assert evaluation["last_evaluations"]["count"] == 2 and evaluation["last_evaluations"]["split"] == "test"
    assert json.loads(out.stdout)["split"] == "test"


def test_executions_cover_the_steps_and_end_on_every_logged_or_checkpointed_step():
    from types import SimpleNamespace

    from semhpc.runtime.trainer import _executions

    cfg = SimpleNamespace(steps_per_execution=4, log_every=3, checkpoint_every=5)
    runs = list(_executions(7, 20, cfg))                      # steps 8..27
    assert sum(runs) == 20 and max(runs) <= 4
    ends = set(itertools.accumulate(runs, initial=7))
    assert {s for s in range(8, 28) if s % 3 == 0 or s % 5 == 0} <= ends
    assert list(_executions(0, 12, SimpleNamespace(steps_per_execution=10, log_every=10, checkpoint_every=0))) == [10, 2]
    assert list(_executions(0, 3, SimpleNamespace(steps_per_execution=1, log_every=10, checkpoint_every=0))) == [1, 1, 1]


def test_several_steps_per_call_train_exactly_like_one_step_per_call(dataset, tmp_path):
    """Under 2 ranks (allreduce inside the graph loop): same step records, losses and final weights."""
    results = {}
    for per_call in (1, 4):
        run = tmp_path / f"run{per_call}"
        out = subprocess.run(mpirun_command(2, train_args(dataset, run, "train.log_every=3",
                                                          f"train.steps_per_execution={per_call}")),
                             capture_output=True, text=True, timeout=900)
        assert out.returncode == 0, out.stderr[-3000:]
        records = read_metrics(run / "metrics.jsonl")
        results[per_call] = ([(r["step"], r["loss"]) for r in records if r["kind"] == "step"],
                             json.loads((run / "test_metrics.json").read_text()))
    (one_records, one_test), (four_records, four_test) = results[1], results[4]
    total = 2 * steps_per_epoch(dataset)
    # Records every 3 steps within an epoch (a call never runs past a logged step), whatever per_call is.
    assert [step for step, _ in four_records] == [step for step, _ in one_records]
    assert {step for step, _ in four_records} >= set(range(3, total + 1, 3))
    assert [loss for _, loss in four_records] == pytest.approx([loss for _, loss in one_records], rel=1e-4)
    assert four_test["steps"] == one_test["steps"] == total
    assert four_test["replica_fingerprints"][0] == four_test["replica_fingerprints"][1]
    assert four_test["replica_fingerprints"][0] == pytest.approx(one_test["replica_fingerprints"][0], rel=1e-4)


def test_feature_extraction_changes_only_the_logits(dataset, tmp_path):
    import numpy as np
    import tensorflow as tf

    from semhpc.model import registry

    initial = registry.build("densenet28", num_classes=10, input_size=32)
    initial.save_weights(str(tmp_path / "init.h5"), save_format="h5")
    run = tmp_path / "run"
    out = subprocess.run(mpirun_command(2, train_args(dataset, run, "train.epochs=1", "train.mode=feature_extraction",
                                                      f"train.init_weights={tmp_path / 'init.h5'}")),
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    trained = registry.build("densenet28", num_classes=10, input_size=32)
    trained.load_weights(str(run / "final_weights.h5"))
    for layer in trained.layers:
        for mine, before in zip(layer.weights, initial.get_layer(layer.name).weights):
            if layer.name == "predictions":
                assert not np.array_equal(mine.numpy(), before.numpy())
            else:
                np.testing.assert_array_equal(mine.numpy(), before.numpy(), err_msg=mine.name)
    assert tf.keras.backend.floatx() == "float32"


def test_fine_tune_without_init_weights_is_refused(dataset, tmp_path):
    out = semhpc(*train_args(dataset, tmp_path / "run", "train.mode=fine_tune"))
    assert out.returncode == 2
    assert "train.mode=fine_tune needs train.init_weights" in out.stderr


@pytest.mark.slow
def test_inception_v3_with_auxiliary_head_trains_on_two_ranks(dataset, tmp_path):
    run = tmp_path / "run"
    out = subprocess.run(mpirun_command(2, train_args(dataset, run, "model.name=inception_v3", "data.image_size=75",
                                                      "train.epochs=1")),
                         capture_output=True, text=True, timeout=1200)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads((run / "test_metrics.json").read_text())
    assert result["replica_fingerprints"][0] == result["replica_fingerprints"][1]
    start = read_metrics(run / "metrics.jsonl")[0]
    # The auxiliary head trains (its parameters are in the trained model) but is not saved for inference.
    inference_params = __import__("semhpc.model.registry", fromlist=["x"]).describe("inception_v3", 10, 75)["params"]
    assert start["params"] > inference_params
    out = semhpc("eval", str(run))
    assert out.returncode == 0, out.stderr[-3000:]


def _launch(args):
    return subprocess.Popen(mpirun_command(2, args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


def _wait_for_step(metrics, step, proc, limit=600):
    deadline = time.time() + limit
    while time.time() < deadline:
        if metrics.exists() and any(r.get("step", 0) >= step and r["kind"] == "step" for r in read_metrics(metrics)):
            return
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        time.sleep(0.2)
    raise AssertionError(f"step {step} not reached")


@pytest.mark.slow
def test_kill_9_mid_epoch_then_resume_gives_the_same_step_count(dataset, tmp_path):
    run = tmp_path / "run"
    per_epoch = steps_per_epoch(dataset)
    proc = _launch(train_args(dataset, run, "train.checkpoint_every=2", "train.epochs=3"))
    _wait_for_step(run / "metrics.jsonl", per_epoch + 3, proc)     # mid-epoch 2, past a checkpoint
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (run / "test_metrics.json").exists()

    out = subprocess.run(mpirun_command(2, ["train", "--resume", str(run)]), capture_output=True, text=True,
                         timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads((run / "test_metrics.json").read_text())
    assert result["steps"] == 3 * per_epoch                          # as an uninterrupted run
    records = read_metrics(run / "metrics.jsonl")
    steps = [r["step"] for r in records if r["kind"] == "step"]
    assert steps == list(range(1, 3 * per_epoch + 1))                # none duplicated, none missing
    assert [r["kind"] for r in records].count("resume") == 1
    assert [r["epoch"] for r in records if r["kind"] == "epoch"] == [1, 2, 3]


# A run whose validation fails at the end of epoch 2, as when a rank dies there: one process,
# with semhpc.runtime.evaluation.evaluate replaced by one that raises on its second call.
DIE_IN_SECOND_VALIDATION = """
import sys
import semhpc.runtime.evaluation as evaluation
from semhpc.cli import main
real, calls = evaluation.evaluate, []
def evaluate(*args, **kwargs):
    calls.append(1)
    if len(calls) == 2:
        raise SystemExit(9)
    return real(*args, **kwargs)
evaluation.evaluate = evaluate
sys.exit(main(sys.argv[1:]))
"""


def test_a_run_that_dies_in_an_epochs_validation_resumes_with_that_epochs_record(dataset, tmp_path):
    """The epoch's last step is checkpointed only after its epoch record: a checkpoint before it
    would make the resumed run start at the next epoch, and the epoch record would never be written."""
    run = tmp_path / "run"
    per_epoch = steps_per_epoch(dataset, ranks=1)
    args = train_args(dataset, run, f"train.checkpoint_every={per_epoch}", "train.epochs=3")
    died = subprocess.run([sys.executable, "-c", DIE_IN_SECOND_VALIDATION, *args], capture_output=True, text=True,
                          timeout=600)
    assert died.returncode == 9, died.stderr[-3000:]
    assert [r["epoch"] for r in read_metrics(run / "metrics.jsonl") if r["kind"] == "epoch"] == [1]
    out = semhpc("train", "--resume", str(run), timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    records = read_metrics(run / "metrics.jsonl")
    assert [r["epoch"] for r in records if r["kind"] == "epoch"] == [1, 2, 3]
    assert [r["step"] for r in records if r["kind"] == "step"] == list(range(1, 3 * per_epoch + 1))


def test_resume_without_checkpoint_is_one_clear_line(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text("train:\n  epochs: 1\n")
    out = semhpc("train", "--resume", str(tmp_path / "run"), "--set", f"data.dir={tmp_path}")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith("semhpc train: error: ")
    assert str(tmp_path) in out.stderr


@pytest.mark.slow
def test_a_dead_rank_ends_the_job_instead_of_hanging(dataset, tmp_path):
    run = tmp_path / "run"
    proc = _launch(train_args(dataset, run, "train.epochs=50"))
    _wait_for_step(run / "metrics.jsonl", 2, proc)
    ranks = subprocess.run(["pgrep", "-f", f"run.dir={run}"], capture_output=True, text=True).stdout.split()
    python_ranks = [int(p) for p in ranks if "python" in Path(f"/proc/{p}/cmdline").read_text(errors="ignore")]
    os.kill(max(python_ranks), signal.SIGKILL)                       # one rank dies
    try:
        code = proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert code != 0
    assert not (run / "test_metrics.json").exists()


@pytest.mark.slow
def test_tiny_demo_learns_well_above_chance(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(
        f"run: {{dir: {tmp_path / 'run'}}}\n"
        f"synth: {{out: {tmp_path / 'tiffs'}, per_class: 40, size: [96, 72], seed: 1}}\n"
        f"ingest: {{size: [64, 48], shards_per_split: 2}}\n"
        f"data: {{dir: {tmp_path / 'data'}, image_size: 32}}\n"
        # The demo's recipe (configs/demo.yaml): Adam, then a fast decay that settles the weights.
        "train: {epochs: 20, batch_size: 8, optimizer: adam, lr: 0.001, lr_decay: 0.85,"
        " num_epochs_per_decay: 1}\n"
    )
    out = semhpc("demo", "--config", str(config), timeout=1500)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads((tmp_path / "run" / "test_metrics.json").read_text())
    assert result["accuracy"] > 0.3                                   # chance is 0.1
    assert "test accuracy" in out.stdout and "images/sec" in out.stdout


def test_bfloat16_keeps_batchnorm_in_float32_where_onednn_is_slow():
    """Under mixed_bfloat16 the registry's DenseNet-28 computes the BatchNormalization layers whose
    channel count is not a multiple of 16 in float32, every other layer as before, with the same
    weights and outputs close to the all-bfloat16 model's; under float32 nothing changes."""
    import numpy as np
    import tensorflow as tf

    from semhpc.model import registry
    from semhpc.runtime.precision import BATCHNORM_CHANNEL_MULTIPLE

    try:
        tf.keras.mixed_precision.set_global_policy("mixed_bfloat16")
        tf.keras.utils.set_random_seed(0)
        model = registry.build("densenet28", num_classes=4, input_size=32)
        tf.keras.utils.set_random_seed(0)
        all_bfloat16 = registry.get_spec("densenet28").builder(num_classes=4, input_size=32)
    finally:
        tf.keras.mixed_precision.set_global_policy("float32")
    norms = [layer for layer in model.layers if isinstance(layer, tf.keras.layers.BatchNormalization)]
    in_float32 = {layer.name for layer in norms if layer.compute_dtype == "float32"}
    odd = {layer.name for layer in norms if layer.input_shape[-1] % BATCHNORM_CHANNEL_MULTIPLE}
    assert in_float32 == odd and len(odd) == 10 and len(norms) == 28  # 120, 88, 200 ... 436 channels
    assert {layer.name for layer in model.layers if layer.compute_dtype != "bfloat16"} == odd | {"input"}
    assert [layer.name for layer in model.layers] == [layer.name for layer in all_bfloat16.layers]
    for mine, theirs in zip(model.weights, all_bfloat16.weights):
        assert mine.name == theirs.name and np.array_equal(mine.numpy(), theirs.numpy())
    images = tf.random.stateless_uniform([2, 32, 32, 3], seed=[1, 2])
    logits = tf.cast(model(images, training=False), tf.float32).numpy()
    reference = tf.cast(all_bfloat16(images, training=False), tf.float32).numpy()
    assert np.allclose(logits, reference, rtol=0.1, atol=0.1), (logits, reference)
    assert all(layer.compute_dtype == "float32" for layer in registry.build("densenet28", input_size=32).layers)


@pytest.mark.slow
def test_mixed_precision_learns_as_well_as_float32(tmp_path):
    """`train.precision=mixed` on this CPU: bfloat16 where AVX512_BF16/AMX exist, else float32 with
    a note. Either way it must learn like float32 on the same data, seed and recipe."""
    from semhpc.runtime.precision import resolve_precision

    assert semhpc("synth", str(tmp_path / "tiffs"), "--per-class", "40", "--size", "96x72", "--seed", "1").returncode == 0
    assert semhpc("ingest", str(tmp_path / "tiffs"), str(tmp_path / "data"), "--size", "64x48",
                  "--shards-per-split", "2").returncode == 0
    recipe = ["model.name=densenet28", "data.image_size=32", "train.batch_size=8", "train.epochs=15",
              "train.optimizer=adam", "train.lr=0.001", "train.lr_decay=0.85", "train.num_epochs_per_decay=1"]
    accuracy, policy = {}, {}
    for precision in ("fp32", "mixed"):
        run = tmp_path / precision
        sets = [*recipe, f"data.dir={tmp_path / 'data'}", f"run.dir={run}", f"train.precision={precision}"]
        out = semhpc("train", *[arg for s in sets for arg in ("--set", s)], timeout=1200)
        assert out.returncode == 0, out.stderr[-3000:]
        policy[precision] = next(r for r in read_metrics(run / "metrics.jsonl") if r.get("kind") == "start")["precision"]
        accuracy[precision] = json.loads((run / "test_metrics.json").read_text())["accuracy"]
    expected = resolve_precision("mixed", has_gpu=False)
    assert policy == {"fp32": "float32", "mixed": expected.policy}
    if expected.note:
        assert expected.note in out.stdout
    assert min(accuracy.values()) > 0.3, accuracy                      # chance is 0.1
    assert abs(accuracy["mixed"] - accuracy["fp32"]) <= 0.2, accuracy  # 45 test images: ±1 image is 0.022
