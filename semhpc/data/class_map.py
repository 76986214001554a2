"""Which category each top-level source folder holds: the class list and folder renames/merges.

Archives name their folders as they grew: the 12-class NFFA set kept Pillars apart from
Patterned_surface and Forest apart from Nanowires; merging those look-alike classes raised
accuracy (docs/background.md: Data), and some trees say Cantilever_Tips for Tips. The default map does those
merges onto the ten categories. A YAML file (`semhpc ingest --class-map FILE`) changes it:

    classes: [Biological, Fibres, ...]     # optional: the classes in label order (default: the ten)
    folders:                               # optional: folder name -> class; added to the defaults
      Pillars: Patterned_surface
      Old_Powders: Powder

A folder named like a class always holds that class, unless `folders` says otherwise. Default
merges whose target is not among `classes` are dropped (so a 12-class list keeps Pillars apart).
A folder that maps to nothing is not guessed at: ingest reports it in errors.csv and skips it.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from semhpc.config.loader import read_yaml_mapping
from semhpc.data.categories import CATEGORIES
from semhpc.utils.errors import SemhpcError

DEFAULT_FOLDERS = {
    "Pillars": "Patterned_surface",
    "Forest": "Nanowires",
    "Cantilever_Tips": "Tips",
}
_FILE_KEYS = ("classes", "folders")


@dataclass(frozen=True)
class ClassMap:
    classes: tuple[str, ...]  # label order
    folders: dict[str, str]  # folder name -> class name, for every folder that is not a class name

    def class_of(self, folder: str) -> str | None:
        """The class a top-level folder holds, or None when the map does not know the folder."""
        if folder in self.folders:
            return self.folders[folder]
        return folder if folder in self.classes else None

    def unknown_folder_reason(self, folder: str) -> str:
        """The errors.csv reason for a folder `class_of` does not know, with the closest name if any."""
        known = list(self.classes) + list(self.folders)
        close = difflib.get_close_matches(folder, known, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        return f"unknown category folder '{folder}' (not a class and not in the class map){hint}; skipped"


def default_class_map() -> ClassMap:
    return _build(CATEGORIES, {})


def load_class_map(path=None) -> ClassMap:
    """The default map, or the one described by the YAML file at `path` (module docstring)."""
    if path is None:
        return default_class_map()
    content = read_yaml_mapping(Path(path), "class map",
                                f"a class map must be a mapping with keys {', '.join(_FILE_KEYS)}")
    unknown = [key for key in content if key not in _FILE_KEYS]
    if unknown:
        raise SemhpcError(f"{path}: unknown key '{unknown[0]}' (valid keys: {', '.join(_FILE_KEYS)})")
    classes = content.get("classes", list(CATEGORIES))
    folders = content.get("folders") or {}
    if not (isinstance(classes, list) and classes and all(isinstance(name, str) and name for name in classes)):
        raise SemhpcError(f"{path}: 'classes' must be a non-empty list of names, got {classes!r}")
    if len(set(classes)) != len(classes):
        raise SemhpcError(f"{path}: 'classes' lists a name twice: {classes}")
    if not isinstance(folders, dict):
        raise SemhpcError(f"{path}: 'folders' must map folder names to classes, got {folders!r}")
    for folder, target in folders.items():
        if target not in classes:
            raise SemhpcError(f"{path}: folders.{folder} maps to '{target}', which is not a class "
                              f"(classes: {', '.join(classes)})")
    return _build(tuple(classes), {str(folder): target for folder, target in folders.items()})


def _build(classes: tuple[str, ...], file_folders: dict[str, str]) -> ClassMap:
    defaults = {folder: target for folder, target in DEFAULT_FOLDERS.items()
                if target in classes and folder not in classes}
    return ClassMap(tuple(classes), {**defaults, **file_folders})
