"""`semhpc bench`: the JSON document, the table, rank gathering under mpirun, the thread sweep's
CSV/JSON/PNG, storage reads, and the arithmetic behind speedup and FLOPs. Tiny models, no timing
thresholds."""

import json
import subprocess

import numpy as np
import pandas as pd
import pytest

from cli_runs import run_semhpc as semhpc
from semhpc.bench.sweep import parse_counts, sweep_table
from semhpc.runtime.launcher import mpirun_command
from semhpc.utils.errors import SemhpcError

TINY = ["--model", "densenet28", "--image-size", "32", "--batch-size", "2", "--batches", "3", "--warmup", "1"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def check_phase(stats, batch_size, ranks):
    assert stats["seconds_per_batch_mean"] > 0
    assert stats["seconds_per_batch_std"] >= 0
    assert stats["images_per_sec_per_rank"] == pytest.approx(batch_size / stats["seconds_per_batch_mean"])
    assert stats["images_per_sec_total"] == pytest.approx(batch_size / stats["seconds_per_batch_mean"] * ranks)
    assert [r["rank"] for r in stats["per_rank"]] == list(range(ranks))
    for rank in stats["per_rank"]:
        assert rank["seconds_per_batch_mean"] > 0 and rank["seconds_per_batch_std"] >= 0
        assert rank["window"][0] <= rank["window"][1]
    # The pooled mean is the mean of the ranks' means (every rank times the same number of batches).
    assert stats["seconds_per_batch_mean"] == pytest.approx(
        np.mean([r["seconds_per_batch_mean"] for r in stats["per_rank"]]))


def test_one_process_writes_the_document_and_prints_the_table(tmp_path):
    out = semhpc("bench", *TINY, "--mode", "both", "--out", str(tmp_path / "bench.json"))
    assert out.returncode == 0, out.stderr
    doc = json.loads((tmp_path / "bench.json").read_text())
    assert doc["kind"] == "bench" and doc["model"] == "densenet28" and doc["ranks"] == 1
    assert (doc["image_size"], doc["batch_size"], doc["batches"], doc["mode"]) == (32, 2, 3, "both")
    assert doc["precision"] == "float32" and doc["data_format"] == "channels_last"
    for phase in ("forward", "train"):
        check_phase(doc[phase], 2, 1)
    table = out.stdout.splitlines()
    assert table[0].startswith("densenet28, 32 px, batch 2 per rank, 1 rank(s)")
    assert [line.split()[0] for line in table[2:]] == ["forward", "train"]


@pytest.mark.mpi
def test_two_ranks_are_gathered_on_rank_0(tmp_path):
    cmd = mpirun_command(2, ["bench", *TINY, "--mode", "train", "--json"])
    cmd.insert(1, "--oversubscribe")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)  # one document: only rank 0 prints
    assert doc["ranks"] == 2 and doc["threads_per_rank"] == 1 and "forward" not in doc
    check_phase(doc["train"], 2, 2)


def test_thread_sweep_writes_csv_json_and_png(tmp_path):
    out = semhpc("bench", *TINY, "--threads", "1,2", "--out", str(tmp_path / "sweep"))
    assert out.returncode == 0, out.stderr
    table = pd.read_csv(tmp_path / "sweep" / "sweep.csv")
    assert list(table["threads"]) == [1, 2] and set(table["phase"]) == {"train"}
    assert list(table["workers"]) == [1, 1]
    first = table["images_per_sec"].iloc[0]
    assert table["speedup"].tolist() == pytest.approx((table["images_per_sec"] / first).tolist())
    assert table["efficiency"].tolist() == pytest.approx((table["speedup"] / table["threads"]).tolist())
    document = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert document["kind"] == "thread_sweep"
    assert [point["threads_per_rank"] for point in document["points"]] == [1, 2]
    assert (tmp_path / "sweep" / "sweep.png").read_bytes().startswith(PNG_SIGNATURE)


@pytest.mark.mpi
@pytest.mark.slow
def test_rank_sweep_runs_each_point_under_mpirun(tmp_path):
    out = semhpc("bench", *TINY, "--sweep", "1,2", "--out", str(tmp_path / "sweep"), timeout=600)
    assert out.returncode == 0, out.stderr
    table = pd.read_csv(tmp_path / "sweep" / "sweep.csv")
    assert list(table["workers"]) == [1, 2] and list(table["threads"]) == [1, 1]
    assert table["speedup"].iloc[0] == 1.0
    assert table["efficiency"].iloc[1] == pytest.approx(table["speedup"].iloc[1] / 2)


def test_sweep_table_compares_each_phase_with_its_first_point():
    def document(ranks, forward, train):
        def stats(seconds):
            return {"seconds_per_batch_mean": seconds, "seconds_per_batch_std": 0.0,
                    "images_per_sec_total": 8 / seconds * ranks, "images_per_sec_per_rank": 8 / seconds}
        return {"model": "m", "ranks": ranks, "threads_per_rank": 1, "batch_size": 8, "image_size": 32,
                "forward": stats(forward), "train": stats(train)}

    table = sweep_table([document(1, 0.1, 0.4), document(2, 0.1, 0.5), document(4, 0.2, 0.5)], "workers")
    train = table[table["phase"] == "train"]
    forward = table[table["phase"] == "forward"]
    # train: 20, 32, 64 img/s; forward: 80, 160, 160 img/s
    assert train["speedup"].tolist() == pytest.approx([1.0, 1.6, 3.2])
    assert train["efficiency"].tolist() == pytest.approx([1.0, 0.8, 0.8])
    assert forward["speedup"].tolist() == pytest.approx([1.0, 2.0, 2.0])
    assert forward["efficiency"].tolist() == pytest.approx([1.0, 1.0, 0.5])


@pytest.mark.parametrize("text", ["", "0,1", "2,1", "1,1", "one", "1,5000"])
def test_bad_count_lists_are_refused(text):
    with pytest.raises(SemhpcError, match="--sweep"):
        parse_counts(text, "--sweep", 4096)


def test_warmup_zero_is_one_clear_line():
    out = semhpc("bench", "--warmup", "0")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "semhpc bench: error: argument --warmup: 0 is out of range: must be between 1 and 10000 "
        "(see semhpc bench --help)"]


def test_io_bench_reads_every_tiff_with_each_reader_count(tmp_path):
    from semhpc.bench import io
    from semhpc.data.synth import generate

    generate(tmp_path / "tiffs", per_class=1, size=(128, 96), progress=False)
    files = io.find_files(tmp_path / "tiffs")
    assert len(files) == 10
    rows = io.io_sweep(files, [1, 2])
    assert [row["readers"] for row in rows] == [1, 2]
    total_mb = sum(path.stat().st_size for path in files) / 1e6
    for row in rows:
        assert row["images"] == 10 and row["megabytes"] == pytest.approx(total_mb)
        assert row["images_per_sec"] == pytest.approx(row["images"] / row["seconds"])
    assert rows[0]["speedup"] == 1.0


def test_io_bench_decodes_every_tfrecord_image(tmp_path):
    import tensorflow as tf

    for shard, count in (("a", 3), ("b", 2)):
        with tf.io.TFRecordWriter(str(tmp_path / f"train-{shard}.tfrecord")) as writer:
            for _ in range(count):
                png = tf.io.encode_png(tf.zeros([6, 5, 1], tf.uint8)).numpy()
                feature = {"image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[png]))}
                writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    (tmp_path / "manifest.json").write_text("{}")  # other files are ignored when shards exist
    out = semhpc("bench", "io", str(tmp_path), "--readers", "2", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["file_kind"] == "tfrecord" and doc["files"] == 2
    assert [(row["readers"], row["images"]) for row in doc["rows"]] == [(2, 5)]


def test_io_bench_compares_copies_of_the_same_files_on_several_paths(tmp_path):
    import shutil

    from semhpc.data.synth import generate

    generate(tmp_path / "a", per_class=1, size=(128, 96), progress=False)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    out = semhpc("bench", "io", str(tmp_path / "a"), str(tmp_path / "b"), "--readers", "1,2", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["kind"] == "bench_io_compare"
    assert [(d["path"], d["files"], [row["images"] for row in d["rows"]]) for d in doc["paths"]] == [
        (str(tmp_path / "a"), 10, [10, 10]), (str(tmp_path / "b"), 10, [10, 10])]
    for at, row in enumerate(doc["relative"]):
        ratios = row["images_per_sec_vs_first"]
        assert ratios[str(tmp_path / "a")] == 1.0
        assert ratios[str(tmp_path / "b")] == pytest.approx(
            doc["paths"][1]["rows"][at]["images_per_sec"] / doc["paths"][0]["rows"][at]["images_per_sec"])
    table = semhpc("bench", "io", str(tmp_path / "a"), str(tmp_path / "b"), "--readers", "1").stdout
    assert f"relative to {tmp_path / 'a'}" in table and f"{tmp_path / 'b'} " in table.splitlines()[-1]

    (tmp_path / "b" / "Tips").rename(tmp_path / "Tips-elsewhere")
    out = semhpc("bench", "io", str(tmp_path / "a"), str(tmp_path / "b"))
    assert out.returncode == 2
    assert out.stderr.strip().startswith(f"semhpc bench: error: {tmp_path / 'b'} holds 9 file(s) of ")
    assert out.stderr.strip().endswith("compare copies of the same files")


def test_io_bench_on_a_folder_without_images_is_one_clear_line(tmp_path):
    out = semhpc("bench", "io", str(tmp_path))
    assert out.returncode == 2
    assert out.stderr.strip() == f"semhpc bench: error: {tmp_path}: no .tif/.tiff files or .tfrecord shards to read"


def test_flops_of_convolutions_and_dense_layers():
    import tensorflow as tf

    from semhpc.bench.flops import layer_flops, model_flops

    inputs = tf.keras.Input((8, 8, 3))
    conv = tf.keras.layers.Conv2D(4, 3, padding="same")
    strided = tf.keras.layers.Conv2D(6, 1, strides=2)
    dense = tf.keras.layers.Dense(5)
    x = strided(conv(inputs))
    model = tf.keras.Model(inputs, dense(tf.keras.layers.Flatten()(x)))
    # 2 x multiply-adds: 3x3x3 taps x 4 filters at 8x8; 1x1x4 x 6 at 4x4; (4*4*6) x 5
    assert layer_flops(conv) == 2 * 27 * 4 * 64
    assert layer_flops(strided) == 2 * 4 * 6 * 16
    assert layer_flops(dense) == 2 * 96 * 5
    assert model_flops(model) == layer_flops(conv) + layer_flops(strided) + layer_flops(dense)


def test_channels_first_conversion_moves_every_channel_axis():
    import tensorflow as tf

    from semhpc.bench.workload import channels_first
    from semhpc.model import registry

    model = registry.build("densenet28", input_size=32)
    nchw = channels_first(model)
    assert nchw.input_shape == (None, 3, 32, 32) and nchw.output_shape == model.output_shape
    assert nchw.count_params() == model.count_params()
    assert [layer.name for layer in nchw.layers] == [layer.name for layer in model.layers]
    for layer in nchw.layers[1:]:
        config = layer.get_config()
        if "data_format" in config:
            assert config["data_format"] == "channels_first", layer.name
        if isinstance(layer, (tf.keras.layers.BatchNormalization, tf.keras.layers.Concatenate)):
            assert config["axis"] in (1, [1]), layer.name


def test_channels_first_is_refused_without_a_gpu():
    from semhpc.bench.data_format import check_data_format

    check_data_format("channels_first", has_gpu=True)
    check_data_format("channels_last", has_gpu=False)
    with pytest.raises(SemhpcError, match="channels_first needs a GPU"):
        check_data_format("channels_first", has_gpu=False)
