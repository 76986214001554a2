"""Load, validate, override and save run configurations.

A config is the schema's defaults, overlaid by a YAML file, overlaid by `--set section.key=value`
overrides. Every mistake becomes one `SemhpcError` line naming the file and key: unknown keys get
the closest valid name, wrong types get the value and the expected type.
"""

from __future__ import annotations

import copy
import difflib
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterable

import yaml

from semhpc.config.schema import SCHEMA, Field, defaults
from semhpc.utils import atomic
from semhpc.utils.errors import SemhpcError
from semhpc.utils.files import read_input_text
from semhpc.utils.options import number_text


class Config(SimpleNamespace):
    """Attribute access to a validated config (`cfg.train.batch_size`); `as_dict()` for saving."""

    def as_dict(self) -> dict[str, dict[str, Any]]:
        return {section: dict(vars(getattr(self, section))) for section in SCHEMA}


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> Config:
    """Defaults <- YAML file (if given) <- overrides ("section.key=value"), validated."""
    values = defaults()
    source = "defaults"
    if path is not None:
        source = str(path)
        _merge(values, read_yaml_mapping(Path(path)), source)
    for override in overrides:
        section, key, value = _parse_override(override)
        _merge(values, {section: {key: value}}, f"--set {override}")
    return Config(**{section: SimpleNamespace(**keys) for section, keys in values.items()})


def save_config(cfg: Config, run_dir: str | Path) -> Path:
    """Write the resolved config to RUN_DIR/config.yaml (atomically) and return its path."""
    out = Path(run_dir) / "config.yaml"
    atomic.write_text(out, yaml.safe_dump(cfg.as_dict(), sort_keys=False))
    return out


def read_yaml_mapping(path: Path, what: str = "config file",
                      not_a_mapping: str = "top level must be a mapping of sections") -> dict:
    """The mapping at the top of the YAML file `path` ({} when empty), else one SemhpcError line.

    Shared by every YAML input (run configs, cluster profiles, class maps); `what` names the file
    in the errors and `not_a_mapping` says what its top level should be. The file must be UTF-8
    (a bad byte is named with its offset) and no mapping may repeat a key: YAML would keep the
    last value silently, so a config with `lr` twice trains with whichever comes later.
    """
    text = read_input_text(path, what)
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 -- a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SemhpcError(f"{path}: invalid YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SemhpcError(f"{path}: {not_a_mapping}, got {type(data).__name__}")
    return data


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key repeated in one mapping (the error names its line)."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` may be overridden: not a repeat
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key '{key}' (first on line {seen[key]})", key_node.start_mark)
                seen[key] = key_node.start_mark.line + 1
            except TypeError:  # an unhashable key: SafeLoader's own error says so
                break
        return super().construct_mapping(node, deep=deep)


def _parse_override(text: str) -> tuple[str, str, Any]:
    name, sep, raw = text.partition("=")
    section, dot, key = name.strip().partition(".")
    if not sep or not dot or not key:
        raise SemhpcError(f"--set {text!r}: expected section.key=value, e.g. train.batch_size=32")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return section, key, value


def _merge(values: dict, update: dict, source: str) -> None:
    for section, keys in update.items():
        if section not in SCHEMA:
            raise SemhpcError(f"{source}: unknown section '{section}'{did_you_mean(section, SCHEMA)}")
        if not isinstance(keys, dict):
            raise SemhpcError(f"{source}: section '{section}' must be a mapping, got {type(keys).__name__}")
        for key, value in keys.items():
            fields = SCHEMA[section]
            if key not in fields:
                raise SemhpcError(
                    f"{source}: unknown key '{section}.{key}'{did_you_mean(key, fields, section)}"
                )
            values[section][key] = check_value(f"{section}.{key}", value, fields[key], source)


def did_you_mean(name: str, valid: Iterable[str], section: str | None = None) -> str:
    """The end of an "unknown key" message: the closest valid name, else all of them (also used
    by the cluster profiles, hpc/profiles.py, so both kinds of YAML read alike)."""
    close = difflib.get_close_matches(str(name), list(valid), n=1, cutoff=0.5)
    if not close:
        return f"; valid: {', '.join(valid)}"
    return f"; did you mean '{section + '.' if section else ''}{close[0]}'?"


def check_value(key: str, value: Any, field: Field, source: str) -> Any:
    """Return the value converted to the field's kind, or raise naming key, value and kind (the
    schema's `Field` rules, shared by configs and cluster profiles)."""
    converted = _convert(value, field.kind)
    if converted is None:
        raise SemhpcError(f"{source}: {key} = {value!r} is not a valid {field.kind}")
    if field.choices and converted not in field.choices:
        raise SemhpcError(f"{source}: {key} = {value!r} must be one of: {', '.join(field.choices)}")
    items = converted if isinstance(converted, list) else [converted]
    if field.length is not None and len(items) != field.length:
        raise SemhpcError(f"{source}: {key} = {value!r} must hold {field.length} items")
    low = -math.inf if field.minimum is None else field.minimum
    high = math.inf if field.maximum is None else field.maximum
    if any(isinstance(v, (int, float)) and not low <= v <= high for v in items):  # NaN fails too
        raise SemhpcError(f"{source}: {key} = {value!r} {_range_text(field)}")
    return copy.deepcopy(converted)


def _range_text(field: Field) -> str:
    if field.maximum is None:
        return f"must be >= {number_text(field.minimum)}"
    if field.minimum is None:
        return f"must be <= {number_text(field.maximum)}"
    return f"must be between {number_text(field.minimum)} and {number_text(field.maximum)}"


def _convert(value: Any, kind: str) -> Any:
    """The value as `kind`, or None when it does not fit (bools are never numbers here)."""
    if kind.startswith("list["):
        if not isinstance(value, list) or not value:
            return None
        items = [_convert(v, kind[5:-1]) for v in value]
        return None if any(v is None for v in items) else items
    if isinstance(value, bool):
        return value if kind == "bool" else None
    if kind == "int":
        return value if isinstance(value, int) else None
    if kind == "float":
        return float(value) if isinstance(value, (int, float)) else None
    if kind == "str":
        return value if isinstance(value, str) else None
    return None
