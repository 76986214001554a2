"""The catalog database: one row per image of the archive, searchable by what the repository's
users ask for (category, confidence, decision, instrument, magnification, pixel size, date, text).

Why a database: the NFFA repository is searched by metadata (Aversa 2018, ch. 5); a table of
200,000 images answers an indexed query in milliseconds, where reading the HDF5 files or the
TFRecords again takes minutes. SQLite is the default (one file, no server, in Python's standard
library); a `postgresql://` URL puts the catalog on a PostgreSQL server a site shares (the
`psycopg` package). The two differ only in `_Dialect`: connecting, the text index (SQLite FTS5
kept by triggers, PostgreSQL a generated tsvector with a GIN index) and case-blind matching.

One table, `images`, keyed by `path`: the image's path below the archive folder, "/"-separated,
the key the three sources share (`semhpc ingest` records it, `semhpc hdf5` stores it as
`source_file`, `semhpc classify` paths are made relative to their input folder). Each source
fills its own columns (`COLUMNS` says which); indexing a source again updates its columns of the
existing rows (an upsert on `path`) and leaves the others alone, so re-indexing never duplicates
a row and a new classification does not erase the HDF5 metadata. `search_text` (generated from
the text columns) is indexed for the free-text search.
"""

from __future__ import annotations

import errno
import os
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from semhpc.classify.policy import DECISIONS, TOP_K
from semhpc.data.nffa_context import FIELDS
from semhpc.utils.errors import SemhpcError, write_failure

SCHEMA_VERSION = 1
# column -> SQL type. Sources: dataset (class, split, metadata), hdf5 (metadata, user, sample,
# classification), predictions (the top-5 and the decision).
COLUMNS: dict[str, str] = {
    "path": "TEXT PRIMARY KEY",
    "class": "TEXT", "split": "TEXT", "dataset": "TEXT",
    "vendor": "TEXT COLLATE NOCASE", "model": "TEXT COLLATE NOCASE", "detector": "TEXT",
    "magnification": "REAL", "pixel_size_m": "REAL", "hv_volts": "REAL", "working_distance_m": "REAL",
    "acquired_at": "TEXT", "width": "INTEGER", "height": "INTEGER", "pixel_sha256": "TEXT",
    "hdf5_file": "TEXT",
    **{f"{group}_{field}": "TEXT" for group, fields in FIELDS.items() for field in fields},
    **{f"top{k}_{kind}": ("TEXT" if kind == "label" else "REAL") for k in range(1, TOP_K + 1)
       for kind in ("label", "score")},
    "decision": "TEXT", "model_version": "TEXT", "predictions_file": "TEXT",
}
METADATA_COLUMNS = ("vendor", "model", "detector", "magnification", "pixel_size_m", "hv_volts",
                    "working_distance_m", "acquired_at", "width", "height", "pixel_sha256")
PREDICTION_COLUMNS = (*(f"top{k}_{kind}" for k in range(1, TOP_K + 1) for kind in ("label", "score")),
                      "decision", "model_version")
# What the free-text search looks in.
TEXT_COLUMNS = ("path", "class", "vendor", "model", "detector", "top1_label", "top2_label",
                *(f"{group}_{field}" for group, fields in FIELDS.items() for field in fields))
# index name -> its columns; label and class also with the score, the usual pair in a review.
INDEXES = {
    **{column: (column,) for column in ("split", "top1_score", "decision", "vendor", "model", "magnification",
                                        "pixel_size_m", "acquired_at", "model_version")},
    "class_score": ("class", "top1_score"),
    "label_score": ("top1_label", "top1_score"),
}
TABLE_COLUMNS = ("path", "class", "top1_label", "top1_score", "decision", "vendor", "model",
                 "magnification", "pixel_size_m", "acquired_at")  # what `catalog query` prints


class Catalog:
    """An open catalog: the connection and the SQL dialect of its database (SQLite or PostgreSQL)."""

    def __init__(self, connection, dialect: _Dialect, name: str):
        self.connection, self.dialect, self.name = connection, dialect, name

    def execute(self, sql: str, params=()):
        """Run `sql` written with `?` placeholders; the cursor."""
        return self.connection.execute(self.dialect.placeholders(sql), params)

    def executemany(self, sql: str, rows) -> None:
        cursor = self.connection.cursor()
        cursor.executemany(self.dialect.placeholders(sql), rows)

    def transaction(self):
        return self.dialect.transaction(self.connection)

    def close(self) -> None:
        self.connection.close()


class _Dialect:
    """What differs between the databases: connecting, the schema, text search, case-blind match."""

    errors: tuple = ()

    def placeholders(self, sql: str) -> str:
        return sql

    def text_condition(self, words: list[str]) -> tuple[str, str]:
        raise NotImplementedError


class _SQLite(_Dialect):
    errors = (sqlite3.DatabaseError,)

    def connect(self, target: str, create: bool):
        path = Path(target)
        if not create and not path.is_file():
            raise SemhpcError(f"{path}: catalog not found (build it with `semhpc catalog build {path} ...`)")
        if path.exists() and not path.is_file():
            raise SemhpcError(f"{path}: exists and is not a catalog file")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise write_failure(path, exc) from None
        writable = os.access(path.parent, os.W_OK) and (not path.exists() or os.access(path, os.W_OK))
        if create and not writable:  # the file and its journal next to it; sqlite3 would only say "unable to open"
            raise write_failure(path, OSError(_unwritable_errno(path.parent), "not writable"))
        connection = sqlite3.connect(path)
        connection.row_factory = sqlite3.Row
        return connection

    def transaction(self, connection):
        return connection  # sqlite3: commit on success, roll back on an exception

    def has_schema(self, catalog: Catalog) -> bool:
        return catalog.execute("SELECT 1 FROM sqlite_master WHERE name = 'catalog_info'").fetchone() is not None

    def schema(self) -> list[str]:
        search = " || ' ' || ".join(f"coalesce({column}, '')" for column in TEXT_COLUMNS)
        columns = ", ".join(f'"{name}" {kind}' for name, kind in COLUMNS.items())
        return [
            f"CREATE TABLE images ({columns}, search_text TEXT GENERATED ALWAYS AS ({search}) STORED)",
            *(f"CREATE INDEX images_{name} ON images({', '.join(columns)})" for name, columns in INDEXES.items()),
            "CREATE VIRTUAL TABLE images_fts USING fts5(search_text, content='images', content_rowid='rowid')",
            ("CREATE TRIGGER images_fts_insert AFTER INSERT ON images BEGIN "
             "INSERT INTO images_fts(rowid, search_text) VALUES (new.rowid, new.search_text); END"),
            ("CREATE TRIGGER images_fts_delete AFTER DELETE ON images BEGIN "
             "INSERT INTO images_fts(images_fts, rowid, search_text) VALUES ('delete', old.rowid, old.search_text); END"),
            ("CREATE TRIGGER images_fts_update AFTER UPDATE ON images BEGIN "
             "INSERT INTO images_fts(images_fts, rowid, search_text) VALUES ('delete', old.rowid, old.search_text); "
             "INSERT INTO images_fts(rowid, search_text) VALUES (new.rowid, new.search_text); END"),
            "CREATE TABLE catalog_info (key TEXT PRIMARY KEY, value TEXT)",
        ]

    def analyse(self, catalog: Catalog) -> None:
        catalog.execute("PRAGMA optimize")

    def text_condition(self, words: list[str]) -> tuple[str, str]:
        match = " AND ".join('"' + word + '"*' for word in words)
        return "rowid IN (SELECT rowid FROM images_fts WHERE images_fts MATCH ?)", match

    def instrument_condition(self) -> str:
        return "(vendor = ? OR model = ?)"  # both columns are COLLATE NOCASE


class _PostgreSQL(_Dialect):
    """A catalog a site shares: the same table, a tsvector column with a GIN index for the text."""

    def __init__(self):
        try:
            import psycopg
        except ImportError:
            raise SemhpcError("a postgresql:// catalog needs the psycopg package (pip install psycopg[binary])") \
                from None
        self.psycopg = psycopg
        self.errors = (psycopg.Error,)

    def connect(self, target: str, create: bool):
        from psycopg.rows import dict_row

        return self.psycopg.connect(target, row_factory=dict_row, autocommit=True)

    def placeholders(self, sql: str) -> str:
        return sql.replace("?", "%s")

    def transaction(self, connection):
        return connection.transaction()

    def has_schema(self, catalog: Catalog) -> bool:
        return catalog.execute("SELECT to_regclass('catalog_info') AS name").fetchone()["name"] is not None

    def schema(self) -> list[str]:
        text = " || ' ' || ".join(f"coalesce({column}, '')" for column in TEXT_COLUMNS)
        columns = ", ".join(f'"{name}" {kind.replace(" COLLATE NOCASE", "")}' for name, kind in COLUMNS.items())
        return [
            (f"CREATE TABLE images ({columns}, search_text tsvector GENERATED ALWAYS AS "
             f"(to_tsvector('simple', regexp_replace({text}, '[^[:alnum:]]+', ' ', 'g'))) STORED)"),
            *(f"CREATE INDEX images_{name} ON images({', '.join(columns)})" for name, columns in INDEXES.items()),
            "CREATE INDEX images_vendor_nocase ON images(lower(vendor))",
            "CREATE INDEX images_model_nocase ON images(lower(model))",
            "CREATE INDEX images_text ON images USING gin(search_text)",
            "CREATE TABLE catalog_info (key TEXT PRIMARY KEY, value TEXT)",
        ]

    def analyse(self, catalog: Catalog) -> None:
        catalog.execute("ANALYZE images")

    def text_condition(self, words: list[str]) -> tuple[str, str]:
        return "search_text @@ to_tsquery('simple', ?)", " & ".join(f"{word}:*" for word in words)

    def instrument_condition(self) -> str:
        return "(lower(vendor) = lower(?) OR lower(model) = lower(?))"


def open_catalog(target: str | Path, create: bool = True) -> Catalog:
    """The catalog at `target`: a file path (SQLite) or a postgresql:// URL; created with its
    schema when missing and `create`."""
    target = str(target)
    dialect = _PostgreSQL() if target.startswith(("postgresql://", "postgres://")) else _SQLite()
    try:
        catalog = Catalog(dialect.connect(target, create), dialect, target)
        if not dialect.has_schema(catalog):
            if not create:
                raise SemhpcError(f"{target}: no catalog there (build it with `semhpc catalog build`)")
            with catalog.transaction():
                for statement in dialect.schema():
                    catalog.execute(statement)
                catalog.execute("INSERT INTO catalog_info VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        version = catalog.execute("SELECT value FROM catalog_info WHERE key = 'schema_version'").fetchone()
        if version is None or version["value"] != str(SCHEMA_VERSION):
            raise SemhpcError(f"{target}: catalog schema {version and version['value']}, this semhpc reads "
                              f"{SCHEMA_VERSION}; rebuild it")
    except dialect.errors as exc:
        raise _disk_failure(target, exc) or SemhpcError(
            f"{target}: cannot open as a semhpc catalog ({str(exc).strip().splitlines()[0]})") from None
    return catalog


def _unwritable_errno(folder: Path) -> int:
    """EROFS when `folder` is on a read-only file system, else EACCES (no write permission)."""
    return errno.EROFS if os.statvfs(folder).f_flag & os.ST_RDONLY else errno.EACCES


def _disk_failure(target: str, exc: Exception) -> SemhpcError | None:
    """The one write-failure line when a database error is a full disk (SQLite says only "database
    or disk is full", PostgreSQL "could not extend file ... No space left on device"), else None."""
    text = str(exc).lower()
    if "disk is full" in text or "no space left on device" in text:
        return write_failure(target, OSError(errno.ENOSPC, "no space left on device"))
    return None


def upsert(catalog: Catalog, rows: list[dict], batch: int = 5000) -> int:
    """Insert or update `rows` (dicts of COLUMNS, `path` required) by path; returns how many.

    Rows of one call may differ in their keys: each batch groups rows by their set of columns, and
    an existing row keeps every column a row does not carry.
    """
    try:
        return _upsert(catalog, rows, batch)
    except catalog.dialect.errors as exc:
        raise _disk_failure(catalog.name, exc) or exc from None


def _upsert(catalog: Catalog, rows: list[dict], batch: int) -> int:
    written = 0
    for start in range(0, len(rows), batch):
        by_columns: dict[tuple, list] = {}
        for row in rows[start:start + batch]:
            unknown = set(row) - set(COLUMNS)
            if unknown:
                raise SemhpcError(f"catalog: unknown column(s) {', '.join(sorted(unknown))}")
            by_columns.setdefault(tuple(sorted(row)), []).append(row)
        with catalog.transaction():
            for columns, group in by_columns.items():
                names = ", ".join(f'"{c}"' for c in columns)
                marks = ", ".join("?" for _ in columns)
                updates = ", ".join(f'"{c}" = excluded."{c}"' for c in columns if c != "path")
                catalog.executemany(f"INSERT INTO images ({names}) VALUES ({marks}) ON CONFLICT(path) DO "
                                    + (f"UPDATE SET {updates}" if updates else "NOTHING"),
                                    [tuple(row[c] for c in columns) for row in group])
                written += len(group)
    catalog.dialect.analyse(catalog)  # refresh the planner's statistics for the new rows
    return written


@dataclass(frozen=True)
class Query:
    """What `catalog query` asks; None = no condition. Ranges are inclusive."""

    image_class: str | None = None  # the ingested category (true label)
    label: str | None = None  # the top-1 prediction
    confidence: tuple[float | None, float | None] = (None, None)  # top-1 score
    decision: str | None = None
    instrument: str | None = None  # vendor or model, case-insensitive
    magnification: tuple[float | None, float | None] = (None, None)
    pixel_size_m: tuple[float | None, float | None] = (None, None)
    date: tuple[str | None, str | None] = (None, None)  # ISO dates or date-times
    text: str | None = None  # words, each matched as a word prefix
    limit: int = 100


def sql_of(query: Query, dialect: _Dialect) -> tuple[str, list]:
    """The SELECT for `query` (with `?` placeholders) and its parameters."""
    conditions, params = [], []

    def equal(column, value):
        if value is not None:
            conditions.append(f'"{column}" = ?')
            params.append(value)

    def between(column, bounds):
        low, high = bounds
        if low is not None:
            conditions.append(f'"{column}" >= ?')
            params.append(low)
        if high is not None:
            conditions.append(f'"{column}" <= ?')
            params.append(high)

    equal("class", query.image_class)
    equal("top1_label", query.label)
    equal("decision", query.decision)
    between("top1_score", query.confidence)
    between("magnification", query.magnification)
    between("pixel_size_m", query.pixel_size_m)
    low, high = query.date
    # a date-only upper bound includes its whole day ("2016-06-13" < "2016-06-13T17:06:40")
    between("acquired_at", (low, high + "T99" if high is not None and "T" not in high else high))
    if query.instrument is not None:
        conditions.append(dialect.instrument_condition())
        params += [query.instrument, query.instrument]
    words = re.findall(r"\w+", query.text or "")  # the tokenisers' words: letters and digits
    if words:
        condition, match = dialect.text_condition(words)
        conditions.append(condition)
        params.append(match)
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    return f"SELECT * FROM images{where} LIMIT ?", [*params, query.limit]


def run_query(catalog: Catalog, query: Query) -> list[dict]:
    """The rows matching `query` (at most `query.limit`, in path order), as dicts without `search_text`.

    Which rows a limit keeps is the database's choice (the first it finds on the best index):
    sorting every match first would make broad queries scan them all."""
    if query.decision is not None and query.decision not in DECISIONS:
        raise SemhpcError(f"--decision {query.decision}: one of {', '.join(DECISIONS)}")
    sql, params = sql_of(query, catalog.dialect)
    try:
        rows = catalog.execute(sql, params).fetchall()
    except catalog.dialect.errors as exc:
        raise SemhpcError(f"{catalog.name}: query failed ({str(exc).strip().splitlines()[0]})") from None
    return sorted(({key: value for key, value in dict(row).items() if key != "search_text"} for row in rows),
                  key=lambda row: row["path"])


def count_rows(catalog: Catalog) -> int:
    return catalog.execute("SELECT count(*) AS n FROM images").fetchone()["n"]
