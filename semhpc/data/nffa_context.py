"""The `user` and `sample` groups of an NFFA HDF5 file: who measured what (Aversa 2018, §5.1).

The NFFA SEM plugin stores with each image its user, sample and instrument metadata. The
instrument part comes from the TIFF (`/metadata`); user and sample come from two places:

* a facility sidecar (`semhpc hdf5 --facility-metadata FILE`), the export of a facility's user
  office or sample database, one row per image. CSV: a `path` column (the image's path below
  SRC, "/"-separated) and one column per field, named `user.<field>` or `sample.<field>`; an empty
  cell is no value. YAML: a mapping {path: {user: {field: value}, sample: {field: value}}}.
  Unknown columns or fields, duplicate paths, paths leaving SRC and malformed values are errors
  naming the file, the row and the key;
* the instrument's own tags, where the operator filled them in (`INSTRUMENT_TAGS`).

A sidecar value wins over an instrument tag. Every field is a string attribute of its group;
the group's `sources` attribute (JSON) says where each came from ("facility" or "instrument").
`FIELDS` documents each field; `check_file` validates a written file against this layout.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path, PurePosixPath

from semhpc.utils.errors import SemhpcError
from semhpc.utils.files import read_input_text

# group -> field -> meaning (docs/ingest.md shows this table).
FIELDS: dict[str, dict[str, str]] = {
    "user": {
        "name": "who acquired the image (facility account, or the instrument's user name)",
        "email": "contact address of that user",
        "affiliation": "the user's institution",
        "proposal": "the access proposal or project the measurement belongs to",
        "note": "free text the user typed at the instrument (FEI UserText, Zeiss User Text)",
    },
    "sample": {
        "id": "the facility's sample identifier",
        "name": "the sample's name",
        "description": "what the sample is",
        "material": "composition or material class",
        "preparation": "how it was prepared (coating, cleaving, ...)",
        "holder": "the sample holder or stub (Zeiss Sample Holder)",
    },
}
FACILITY, INSTRUMENT = "facility", "instrument"
# (group, field) -> the raw tags that may hold it, in order: ("fei", section, key) / ("zeiss", key).
INSTRUMENT_TAGS: dict[tuple[str, str], tuple[tuple[str, ...], ...]] = {
    ("user", "name"): (("fei", "User", "User"), ("zeiss", "sv_user_name"), ("zeiss", "sv_operator")),
    ("user", "note"): (("fei", "User", "UserText"), ("zeiss", "sv_user_text")),
    ("sample", "id"): (("zeiss", "sv_sample_id"),),
    ("sample", "holder"): (("zeiss", "dp_sample_holder"),),
}
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_MAX_LENGTH = 4096  # an attribute longer than this is an export error, not a description

Context = dict[str, dict[str, str]]  # group -> field -> value


def instrument_context(raw: dict) -> Context:
    """The user/sample fields the instrument tags in `raw` (sem_tiff's raw blocks) hold."""
    context: Context = {group: {} for group in FIELDS}
    for (group, field), places in INSTRUMENT_TAGS.items():
        for place in places:
            value = _raw_value(raw, place)
            if value:
                context[group][field] = value
                break
    return context


def _raw_value(raw: dict, place: tuple[str, ...]) -> str | None:
    vendor, *keys = place
    if vendor == "fei":
        section, key = keys
        return (raw.get("fei", {}).get(section, {}).get(key) or "").strip() or None
    line = raw.get("zeiss", {}).get("params", {}).get(keys[0])
    if not line or "=" not in line:
        return None
    return line.split("=", 1)[1].strip() or None  # "Label = value"; "Sample ID =" is no value


def merge(instrument: Context, facility: Context | None) -> tuple[Context, dict[str, dict[str, str]]]:
    """(values, sources): facility values over instrument ones, and where each value came from."""
    values: Context = {group: {} for group in FIELDS}
    sources: dict[str, dict[str, str]] = {group: {} for group in FIELDS}
    for origin, context in ((INSTRUMENT, instrument), (FACILITY, facility or {})):
        for group, fields in context.items():
            for field, value in fields.items():
                values[group][field], sources[group][field] = value, origin
    return values, sources


def load_facility_metadata(path: str | Path) -> dict[str, Context]:
    """{image path below SRC: context} from a facility sidecar (.csv, .yaml or .yml), validated."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        return _load_csv(path)
    if path.suffix.lower() in (".yaml", ".yml"):
        return _load_yaml(path)
    raise SemhpcError(f"{path}: facility metadata must be .csv, .yaml or .yml")


def _load_csv(path: Path) -> dict[str, Context]:
    text = read_input_text(path, "facility metadata file").removeprefix("\ufeff")  # a spreadsheet's BOM
    try:
        with io.StringIO(text, newline="") as handle:
            reader = csv.DictReader(handle)
            columns = reader.fieldnames or []
            if "path" not in columns:
                raise SemhpcError(f"{path}: no 'path' column (the image's path below SRC)")
            for column in columns:
                if column != "path":
                    _split_column(path, column)
            rows = {}
            for line, row in enumerate(reader, start=2):
                where = f"{path}:{line}"
                if None in row:
                    raise SemhpcError(f"{where}: more cells than the {len(columns)} columns of the header")
                context: Context = {group: {} for group in FIELDS}
                for column, cell in row.items():
                    if column != "path" and cell is not None and cell.strip():
                        group, field = _split_column(path, column)
                        context[group][field] = _checked_value(where, group, field, cell)
                _add_row(rows, where, row["path"], context)
            return rows
    except csv.Error as exc:
        raise SemhpcError(f"{path}: malformed CSV: {exc}") from None


def _load_yaml(path: Path) -> dict[str, Context]:
    from semhpc.config.loader import read_yaml_mapping

    data = read_yaml_mapping(path, "facility metadata file",
                             "top level must map image paths to {user: {...}, sample: {...}}")
    rows = {}
    for image, groups in data.items():
        where = f"{path}: {image}"
        if not isinstance(groups, dict):
            raise SemhpcError(f"{where}: must be a mapping with user and/or sample, got {type(groups).__name__}")
        context: Context = {group: {} for group in FIELDS}
        for group, fields in groups.items():
            if group not in FIELDS:
                raise SemhpcError(f"{where}: '{group}' is not a group (user, sample)")
            if not isinstance(fields, dict):
                raise SemhpcError(f"{where}: {group} must be a mapping of fields, got {type(fields).__name__}")
            for field, value in fields.items():
                _check_field(where, group, str(field))
                if value is None:
                    continue
                if isinstance(value, (dict, list, bool)):
                    raise SemhpcError(f"{where}: {group}.{field} must be text or a number, got {type(value).__name__}")
                context[group][str(field)] = _checked_value(where, group, str(field), str(value))
        _add_row(rows, where, str(image), context)
    return rows


def _split_column(path: Path, column: str) -> tuple[str, str]:
    group, _, field = (column or "").partition(".")
    if group not in FIELDS or field not in FIELDS[group]:
        known = "; ".join(f"{g}.{{{', '.join(fields)}}}" for g, fields in FIELDS.items())
        raise SemhpcError(f"{path}: column '{column}' is not a known field (path, {known})")
    return group, field


def _check_field(where: str, group: str, field: str) -> None:
    if field not in FIELDS[group]:
        raise SemhpcError(f"{where}: {group}.{field} is not a known field ({', '.join(FIELDS[group])})")


def _checked_value(where: str, group: str, field: str, value: str) -> str:
    value = value.strip()
    if len(value) > _MAX_LENGTH:
        raise SemhpcError(f"{where}: {group}.{field} is {len(value)} characters long (at most {_MAX_LENGTH})")
    if (group, field) == ("user", "email") and not _EMAIL.fullmatch(value):
        raise SemhpcError(f"{where}: user.email {value!r} is not an e-mail address")
    return value


def _add_row(rows: dict, where: str, image: str | None, context: Context) -> None:
    relative = normalised_path(image or "")
    if relative is None:
        raise SemhpcError(f"{where}: path {image!r} must be a relative path below SRC")
    if relative in rows:
        raise SemhpcError(f"{where}: path {relative!r} appears twice")
    rows[relative] = context


def normalised_path(image: str) -> str | None:
    """`image` as a "/"-separated path below SRC ("a/./b.tif" -> "a/b.tif"); None if it is empty,
    absolute or leaves SRC."""
    parts = [part for part in PurePosixPath(image.strip().replace("\\", "/")).parts if part != "."]
    if not parts or parts[0] == "/" or ".." in parts:
        return None
    return "/".join(parts)


def write_groups(h5, values: Context, sources: dict[str, dict[str, str]]) -> None:
    """Create /user and /sample in the open h5py file: one string attribute per field, `sources`."""
    for group in FIELDS:
        node = h5.create_group(group)
        for field, value in sorted(values.get(group, {}).items()):
            node.attrs[field] = value
        node.attrs["sources"] = json.dumps(sources.get(group, {}), sort_keys=True)


def check_file(path: str | Path) -> list[str]:
    """Problems of an NFFA HDF5 file against the layout of semhpc/data/hdf5.py (empty: valid)."""
    import h5py

    problems = []
    with h5py.File(path, "r") as h5:
        for attribute in ("schema_version", "source_file", "pixel_sha256", "created_by"):
            if attribute not in h5.attrs:
                problems.append(f"root attribute {attribute} missing")
        image = h5.get("image")
        if not isinstance(image, h5py.Dataset) or image.ndim != 2 or image.dtype != "uint8":
            problems.append("/image is not a uint8 [height, width] dataset")
        for group in ("metadata", "classification", *FIELDS):
            if not isinstance(h5.get(group), h5py.Group):
                problems.append(f"/{group} group missing")
        for group, fields in FIELDS.items():
            node = h5.get(group)
            if not isinstance(node, h5py.Group):
                continue
            try:
                sources = json.loads(node.attrs.get("sources", "{}"))
            except (TypeError, ValueError):
                sources = {}
                problems.append(f"/{group} sources is not JSON")
            for name, value in node.attrs.items():
                if name == "sources":
                    continue
                if name not in fields:
                    problems.append(f"/{group} attribute {name} is not a documented field")
                elif not isinstance(value, str):
                    problems.append(f"/{group} {name} is not a string")
                elif sources.get(name) not in (FACILITY, INSTRUMENT):
                    problems.append(f"/{group} {name} has no source")
            email = node.attrs.get("email")
            if group == "user" and email is not None and not _EMAIL.fullmatch(str(email)):
                problems.append(f"/user email {email!r} is not an e-mail address")
    return problems
