"""`semhpc catalog`: the dataset, HDF5 files and predictions indexed by image path, queries that
agree with a brute-force filter, and incremental re-indexing that updates rows, never duplicates."""

import csv
import json

import numpy as np
import pytest

from ingest_helpers import write_tree
from postgres_server import postgres_server  # noqa: F401  (fixture)
from semhpc.catalog import store
from semhpc.classify.policy import PREDICTION_FIELDS
from semhpc.cli import main as semhpc_main

CLASSES = ["Powder", "Tips", "Fibres"]


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request, tmp_path):
    """Where a test's catalog lives: an SQLite file, or a fresh database on a local PostgreSQL server."""
    if request.param == "sqlite":
        return str(tmp_path / "catalog.sqlite")
    return request.getfixturevalue("postgres_server").new_database()


def semhpc(capsys, *argv) -> tuple[int, str, str]:
    code = semhpc_main([str(arg) for arg in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def query(capsys, db, *options) -> list[dict]:
    code, out, err = semhpc(capsys, "catalog", "query", db, "--json", "--limit", "100000", *options)
    assert code == 0, err
    return json.loads(out)


# --- end to end: ingest + hdf5 + predictions --------------------------------------------------

def write_predictions(path, src, relative_paths, model_version, label_of):
    rows = []
    for index, relative in enumerate(relative_paths):
        score = 0.5 + 0.1 * index
        row = {"path": str(src / relative), "top1_label": label_of(relative), "top1_score": score,
               "decision": "auto" if score >= 0.9 else "suggest", "model_version": model_version}
        for k in range(2, 6):
            row.update({f"top{k}_label": CLASSES[k % 3], f"top{k}_score": (1 - score) / 4})
        rows.append(row)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=PREDICTION_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """An archive of 6 images ingested, converted to HDF5 (one with a facility row) and classified."""
    root = tmp_path_factory.mktemp("catalog")
    src = root / "src"
    relative_paths = sorted(write_tree(src, per_class=2, classes=CLASSES))
    assert semhpc_main(["ingest", str(src), str(root / "data"), "--size", "32x24", "--shards-per-split", "1"]) == 0
    (root / "facility.csv").write_text("path,user.name,sample.material\nTips/tips_001.tif,Ada Lovelace,TiO2\n")
    assert semhpc_main(["hdf5", str(src), str(root / "h5"), "--facility-metadata", str(root / "facility.csv")]) == 0
    write_predictions(root / "predictions.csv", src, relative_paths, "m1", lambda relative: relative.split("/")[0])
    return root, src, relative_paths


def test_build_indexes_every_image_once_with_all_three_sources(archive, target, capsys):
    root, _, relative_paths = archive
    db = target
    code, out, _ = semhpc(capsys, "catalog", "build", db, "--dataset", root / "data", "--hdf5", root / "h5",
                          "--predictions", root / "predictions.csv")
    assert code == 0 and f"catalog: {len(relative_paths)} image(s) in {db} ({len(relative_paths)} new)" in out
    rows = {row["path"]: row for row in query(capsys, db)}
    assert sorted(rows) == relative_paths
    for relative, row in rows.items():
        assert row["class"] == relative.split("/")[0] and row["split"] in ("train", "validation", "test")
        assert row["hdf5_file"] == str((root / "h5" / relative).with_suffix(".h5").resolve())
        assert row["top1_label"] == row["class"] and row["model_version"] == "m1"
        assert row["vendor"] in ("FEI", "Zeiss", None) and row["width"] == 32
    assert rows["Tips/tips_001.tif"]["user_name"] == "Ada Lovelace"
    assert rows["Tips/tips_001.tif"]["sample_material"] == "TiO2"

    # the query options, each against what the rows say
    assert {r["path"] for r in query(capsys, db, "--class", "Tips")} == {"Tips/tips_000.tif", "Tips/tips_001.tif"}
    assert {r["path"] for r in query(capsys, db, "--text", "ada tio")} == {"Tips/tips_001.tif"}
    assert {r["path"] for r in query(capsys, db, "--decision", "auto")} == \
        {path for path, row in rows.items() if row["decision"] == "auto"} != set()
    fei = {path for path, row in rows.items() if row["vendor"] == "FEI"}
    assert {r["path"] for r in query(capsys, db, "--instrument", "fei")} == fei != set()

    code, out, _ = semhpc(capsys, "catalog", "query", db, "--class", "Powder")
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["path", "class", "top1_label", "top1_score"]
    assert [line.split()[0] for line in lines[1:-1]] == ["Powder/powder_000.tif", "Powder/powder_001.tif"]
    assert lines[-1] == "2 row(s)"


def test_reindexing_updates_rows_and_keeps_other_sources_columns(archive, target, tmp_path, capsys):
    root, src, relative_paths = archive
    db = target
    sources = ["--dataset", root / "data", "--hdf5", root / "h5", "--predictions", root / "predictions.csv"]
    assert semhpc(capsys, "catalog", "build", db, *sources)[0] == 0
    code, out, _ = semhpc(capsys, "catalog", "build", db, *sources)
    assert code == 0 and f"{len(relative_paths)} image(s) in {db} (0 new)" in out

    # a new model classifies everything as Fibres: the predictions change, nothing else does
    write_predictions(tmp_path / "new.csv", src, relative_paths, "m2", lambda relative: "Fibres")
    assert semhpc(capsys, "catalog", "build", db, "--predictions", tmp_path / "new.csv")[0] == 0
    rows = {row["path"]: row for row in query(capsys, db)}
    assert len(rows) == len(relative_paths) == store.count_rows(store.open_catalog(db))
    assert {row["model_version"] for row in rows.values()} == {"m2"}
    assert {path for path in rows if rows[path]["top1_label"] == "Fibres"} == set(relative_paths)
    assert rows["Tips/tips_001.tif"]["user_name"] == "Ada Lovelace" and rows["Tips/tips_001.tif"]["class"] == "Tips"
    # the text index follows the update
    assert {r["path"] for r in query(capsys, db, "--text", "fibres")} == set(relative_paths)
    assert {r["path"] for r in query(capsys, db, "--label", "Tips")} == set()


# --- queries against a brute-force filter ------------------------------------------------------

def random_rows(count: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    words = ["alpha", "beta", "gamma", "delta"]
    rows = []
    for i in range(count):
        score = float(rng.uniform(0.1, 1.0))
        rows.append({
            "path": f"{CLASSES[i % 3]}/img_{i:05d}.tif", "class": CLASSES[i % 3], "split": "train",
            "top1_label": CLASSES[int(rng.integers(3))], "top1_score": score,
            "decision": "auto" if score >= 0.9 else "suggest" if score >= 0.35 else "manual",
            "vendor": ["FEI", "Zeiss", None][int(rng.integers(3))], "model": "Helios NanoLab 660",
            "magnification": float(10 ** rng.uniform(2, 5)), "pixel_size_m": float(10 ** rng.uniform(-10, -6)),
            "acquired_at": f"2016-{int(rng.integers(1, 13)):02d}-{int(rng.integers(1, 29)):02d}T12:00:00",
            "user_name": f"{words[int(rng.integers(4))]} user",
        })
    return rows


CASES = [
    (store.Query(image_class="Tips"), lambda r: r["class"] == "Tips"),
    (store.Query(label="Powder", confidence=(0.5, 0.8)), lambda r: r["top1_label"] == "Powder"
     and 0.5 <= r["top1_score"] <= 0.8),
    (store.Query(decision="manual"), lambda r: r["decision"] == "manual"),
    (store.Query(instrument="zeiss"), lambda r: r["vendor"] == "Zeiss"),
    (store.Query(instrument="helios nanolab 660", magnification=(1e3, 2e4)),
     lambda r: 1e3 <= r["magnification"] <= 2e4),
    (store.Query(pixel_size_m=(None, 1e-9)), lambda r: r["pixel_size_m"] <= 1e-9),
    (store.Query(date=("2016-03-01", "2016-04-15")), lambda r: "2016-03-01" <= r["acquired_at"][:10] <= "2016-04-15"),
    (store.Query(text="gam", confidence=(0.9, None)), lambda r: r["user_name"].startswith("gamma")
     and r["top1_score"] >= 0.9),
    # words match the path, class, labels and user fields alike
    (store.Query(text="tips alpha"), lambda r: "Tips" in (r["class"], r["top1_label"])
     and r["user_name"].startswith("alpha")),
]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_queries_return_exactly_the_matching_rows(target, case):
    rows = random_rows(600, seed=4)
    db = store.open_catalog(target)
    store.upsert(db, rows, batch=128)
    query_, keep = CASES[case]
    expected = {row["path"] for row in rows if keep(row)}
    assert expected  # each case selects something
    assert {row["path"] for row in store.run_query(db, store.Query(**{**query_.__dict__, "limit": 10_000}))} == expected
    assert len(store.run_query(db, store.Query(**{**query_.__dict__, "limit": 3}))) == min(3, len(expected))


@pytest.mark.parametrize("argv, error", [
    (["query", "{db}", "--confidence", "0.9"], "--confidence '0.9': give a range MIN..MAX"),
    (["query", "{db}", "--magnification", "a..b"], "--magnification 'a..b': could not convert"),
    (["query", "{db}", "--date", "2016-13-01.."], "--date '2016-13-01..'"),
    (["query", "{db}", "--limit", "0"], "argument --limit: 0 is out of range: must be between 1 and 1000000"),
    (["query", "{db}", "--limit", "1000001"], "argument --limit: 1000001 is out of range"),
    (["query", "{missing}"], "catalog not found"),
    (["build", "{db}"], "give at least one --dataset, --hdf5 or --predictions"),
    (["build", "{db}", "--predictions", "{missing}"], "predictions file not found"),
])
def test_bad_input_is_one_error_line(tmp_path, capsys, argv, error):
    db = tmp_path / "c.sqlite"
    store.open_catalog(db)
    code, _, err = semhpc(capsys, "catalog", *[a.format(db=db, missing=tmp_path / "nothing") for a in argv])
    assert code == 2 and error in err and err.count("\n") == 1


def test_a_file_that_is_not_a_catalog_is_refused(tmp_path, capsys):
    (tmp_path / "x.sqlite").write_text("not sqlite")
    code, _, err = semhpc(capsys, "catalog", "query", tmp_path / "x.sqlite")
    assert code == 2 and f"{tmp_path / 'x.sqlite'}: cannot open as a semhpc catalog" in err and err.count("\n") == 1


def test_postgresql_catalog_errors_are_one_line(postgres_server, capsys):  # noqa: F811  (the fixture)
    empty = postgres_server.new_database()
    code, _, err = semhpc(capsys, "catalog", "query", empty)
    assert code == 2 and f"{empty}: no catalog there" in err and err.count("\n") == 1
    unreachable = "postgresql://postgres@/none?host=/nonexistent&port=1"
    code, _, err = semhpc(capsys, "catalog", "query", unreachable)
    assert code == 2 and f"{unreachable}: cannot open as a semhpc catalog" in err and err.count("\n") == 1
