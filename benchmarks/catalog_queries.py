"""Build and query times of `semhpc catalog` for 200,000 synthetic image records (issue 22, item 6).

What is measured:
  * build: `store.upsert` of N records into a fresh SQLite catalog in batches of 5,000, as
    `semhpc catalog build` does, indexes and the FTS5 text index maintained on the way; then an
    incremental re-index of 10% of the records with new predictions (rows updated, none added);
  * queries: each query of QUERIES (the options of `semhpc catalog query`, LIMIT 100 as the
    command's default) `--repeats` times on the built catalog, warm (the file in the page cache);
    best and median milliseconds. Target: under 50 ms each with the indexes.
  * the same queries on a copy without the column indexes (FTS5 kept), to show what they buy
    (SQLite only).
With `--postgresql URL` (an empty database on a server, e.g. Debian's `postgresql` started as in
tests/postgres_server.py) the catalog is built and queried there instead.
Records: paths Class/img_NNNNNN.tif over the ten categories, top-1 label and score (decision from
the 0.9 / 0.35 policy), vendor FEI/Zeiss/unknown, two models, magnification log-uniform 1e2..1e5,
pixel size log-uniform 1e-10..1e-6 m, dates over 2014-2018, user and sample names from small
vocabularies. Deterministic (seed 0).

    .venv/bin/python benchmarks/catalog_queries.py     # -> docs/figures/catalog_queries.json
    .venv/bin/python benchmarks/catalog_queries.py --postgresql URL --out docs/figures/catalog_queries_postgresql.json
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from common import REPO, machine, write_json

from semhpc.catalog import store
from semhpc.data.categories import CATEGORIES

USERS = ["ada lovelace", "enrico fermi", "lise meitner", "rita levi", "marie curie", "paul dirac"]
MATERIALS = ["TiO2", "ZnO", "silicon", "gold", "graphene", "polymer", "steel", "alumina"]

QUERIES = {
    "class": store.Query(image_class="Nanowires"),
    "predicted label + confidence >= 0.9": store.Query(label="Particles", confidence=(0.9, None)),
    "decision manual": store.Query(decision="manual"),
    "instrument": store.Query(instrument="zeiss"),
    "magnification 1e4..2e4": store.Query(magnification=(1e4, 2e4)),
    "pixel size <= 2e-10": store.Query(pixel_size_m=(None, 2e-10)),
    "date one week": store.Query(date=("2016-06-01", "2016-06-07")),
    "free text 'meitner zno'": store.Query(text="meitner zno"),
    "class + instrument + magnification": store.Query(image_class="Tips", instrument="FEI", magnification=(5e3, 5e4)),
    "rare: label + confidence 0.40..0.41 + date": store.Query(label="Fibres", confidence=(0.40, 0.41),
                                                              date=("2017-01-01", "2017-12-31")),
}


def synthetic_rows(count: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    classes, labels = rng.integers(len(CATEGORIES), size=count), rng.integers(len(CATEGORIES), size=count)
    scores = rng.uniform(0.1, 1.0, count)
    vendors = rng.integers(3, size=count)
    magnification, pixel = 10 ** rng.uniform(2, 5, count), 10 ** rng.uniform(-10, -6, count)
    days = rng.integers(0, 5 * 365, count)
    users, materials = rng.integers(len(USERS), size=count), rng.integers(len(MATERIALS), size=count)
    start = np.datetime64("2014-01-01T00:00:00")
    rows = []
    for i in range(count):
        score = float(scores[i])
        rows.append({
            "path": f"{CATEGORIES[classes[i]]}/img_{i:06d}.tif", "class": CATEGORIES[classes[i]], "split": "train",
            "top1_label": CATEGORIES[labels[i]], "top1_score": score,
            "decision": "auto" if score >= 0.9 else "suggest" if score >= 0.35 else "manual", "model_version": "m1",
            "vendor": ("FEI", "Zeiss", None)[vendors[i]], "model": ("Helios NanoLab 660", "Merlin-61-08", None)[vendors[i]],
            "magnification": float(magnification[i]), "pixel_size_m": float(pixel[i]),
            "acquired_at": str(start + np.timedelta64(int(days[i]), "D") + np.timedelta64(i % 86400, "s")),
            "user_name": USERS[users[i]], "sample_material": MATERIALS[materials[i]],
        })
    return rows


def time_queries(db, repeats: int) -> dict:
    """Per query: milliseconds for the first 100 rows (the command's default) and for every match."""
    results = {}
    for name, query in QUERIES.items():
        result = {}
        for label, limit in (("first_100", 100), ("all", 10 ** 7)):
            times, matched = [], 0
            for _ in range(repeats):
                started = time.perf_counter()
                matched = len(store.run_query(db, dataclasses.replace(query, limit=limit)))
                times.append((time.perf_counter() - started) * 1e3)
            result[label] = {"best_ms": round(min(times), 2), "median_ms": round(statistics.median(times), 2),
                             "rows": matched}
        results[name] = result
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--postgresql", metavar="URL", help="build and query on this (empty) PostgreSQL database")
    parser.add_argument("--out", default=str(REPO / "docs" / "figures" / "catalog_queries.json"))
    args = parser.parse_args()

    rows = synthetic_rows(args.records)
    with tempfile.TemporaryDirectory(prefix="semhpc-catalog-") as tmp:
        path = Path(tmp) / "catalog.sqlite"
        db = store.open_catalog(args.postgresql or path)
        started = time.perf_counter()
        store.upsert(db, rows)
        build_s = time.perf_counter() - started
        update = [{"path": row["path"], "top1_label": "Powder", "top1_score": 0.95, "decision": "auto",
                   "model_version": "m2"} for row in rows[:: 10]]
        started = time.perf_counter()
        store.upsert(db, update)
        reindex_s = time.perf_counter() - started
        assert store.count_rows(db) == args.records  # updated, not duplicated
        indexed = time_queries(db, args.repeats)
        db.close()
        unindexed, size_mb = {}, None
        if not args.postgresql:
            bare = Path(tmp) / "no-indexes.sqlite"
            shutil.copy(path, bare)
            db = store.open_catalog(bare)
            for name in store.INDEXES:
                db.execute(f"DROP INDEX images_{name}")
            unindexed = time_queries(db, max(3, args.repeats // 4))
            size_mb = round(path.stat().st_size / 1e6, 1)

    document = {
        "database": "postgresql" if args.postgresql else "sqlite", "records": args.records, "build_s": round(build_s, 2), "records_per_s": round(args.records / build_s),
        "reindex_records": len(update), "reindex_s": round(reindex_s, 2), "file_mb": size_mb,
        "queries_with_indexes": indexed, "queries_without_column_indexes": unindexed,
        "slowest_indexed_first_100_ms": max(result["first_100"]["median_ms"] for result in indexed.values()),
        "machine": machine(),
    }
    write_json(document, args.out)
    print(f"build {args.records} records: {build_s:.1f} s; re-index {len(update)}: {reindex_s:.1f} s")
    print(f"{'query (median ms)':<45}{'first 100':>10}{'all':>10}{'rows':>8}  without column indexes: first 100, all")
    for name in QUERIES:
        with_, without = indexed[name], unindexed.get(name)
        print(f"{name:<45}{with_['first_100']['median_ms']:>10.2f}{with_['all']['median_ms']:>10.2f}"
              f"{with_['all']['rows']:>8}  " + (f"{without['first_100']['median_ms']:>10.2f}"
                                                f"{without['all']['median_ms']:>10.2f}" if without else "-"))


if __name__ == "__main__":
    main()
