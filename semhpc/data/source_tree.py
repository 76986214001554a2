"""Find the image files below a folder, and say why anything else was left out.

Archives are messy, and one bad entry must never stop a conversion of 150,000 files, nor hang it.
`find_images(folder)` returns the image files plus one `Skipped(path, reason)` per entry it did
not take:
  * folders reached through symlinks are followed (archives link sub-collections in), but a link
    back to a folder already being scanned (a symlink loop) is reported instead of followed
    forever, and a folder reached a second time by another path is reported instead of read twice;
  * with a `tree` (ingest's SRC), a folder link is followed only when it leads outside the tree
    or stays inside the root being scanned: a link to another place of SRC (another category, a
    folder that is no category) is reported and not followed. So every file inside SRC is read
    only through its own top-level folder and gets that folder's label, and what errors.csv
    lists as skipped (an unknown category folder, say) is truly not in the dataset;
  * a symlink that loops on itself or points nowhere is reported;
  * only regular files are taken: a FIFO named x.tif would block the reader forever, a device
    file could be endless, so both are reported;
  * a file whose suffix is not an image suffix (README.txt, Thumbs.db) is reported, not read;
    files with an image suffix are read by content later (a .tif that is really a PNG still works);
  * hidden entries (names starting with ".") are ignored silently: they are tool droppings
    (.DS_Store, ._x.tif from macOS) and semhpc's own state folders.
`ImageFinder(roots, tree).find(root)` does the same for several roots (ingest's category folders)
and never reads a folder twice across them, nor follows a link from one root into another or
elsewhere inside `tree`.
Names are kept as `str` with surrogate escapes (os.fsdecode), so non-UTF-8 names work everywhere;
print them with `semhpc.utils.paths.display_path`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from dataclasses import dataclass

from semhpc.utils.files import kind_of
from semhpc.utils.paths import display_path

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class FoundFile:
    path: str  # relative to the scanned folder, os.sep-separated
    size: int  # bytes
    mtime_ns: int


@dataclass(frozen=True)
class Skipped:
    path: str  # relative to the scanned folder ("" = the folder itself)
    reason: str


def find_images(folder) -> tuple[list[FoundFile], list[Skipped]]:
    """Image files below `folder` (sorted by path) and the entries left out, with reasons."""
    return ImageFinder().find(folder)


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


class ImageFinder:
    """`find_images` over several root folders (ingest's category folders) that remembers what it
    has read: a folder reached again by another path (an alias symlink) is reported, not read twice,
    and a link from inside one root to another root is not followed, so an image is always read
    through its own category folder (and gets that category's label)."""

    def __init__(self, roots=(), tree=None):
        self._scanned: dict[tuple[int, int], str] = {}  # (device, inode) of each folder -> its path as reached
        self._open: set[tuple[int, int]] = set()  # folders on the current descent (loop detection)
        self._roots: dict[tuple[int, int], str] = {}  # identity -> path of every root
        for root in roots:
            with contextlib.suppress(OSError):  # an unreadable root is reported when it is scanned
                self._roots.setdefault(_identity(os.stat(root)), os.fsdecode(root))
        self._tree = os.path.realpath(tree) if tree is not None else None  # folder links stay out of it
        self._root = ""  # real path of the root being scanned
        self.found: list[FoundFile] = []
        self.skipped: list[Skipped] = []

    def find(self, folder) -> tuple[list[FoundFile], list[Skipped]]:
        """Image files below `folder` (paths relative to it, sorted) and the entries left out."""
        self.found, self.skipped = [], []
        self._root = os.path.realpath(os.fsdecode(folder))
        self._scan(os.fsdecode(folder), "")
        return sorted(self.found, key=lambda found: found.path), self.skipped

    def _scan(self, directory: str, relative: str) -> None:
        try:
            identity = _identity(os.stat(directory))
        except OSError as exc:
            self.skipped.append(Skipped(relative, f"cannot read folder information: {exc.strerror or exc}"))
            return
        if identity in self._scanned:
            self.skipped.append(Skipped(relative, self._revisit_reason(identity)))
            return
        if relative and identity in self._roots:
            root = display_path(self._roots[identity])
            self.skipped.append(Skipped(relative, f"link to the category folder '{root}'; not followed "
                                                  "(its images are read there)"))
            return
        if relative and self._tree is not None:
            real = os.path.realpath(directory)
            if _inside(real, self._tree) and not _inside(real, self._root):
                self.skipped.append(Skipped(relative, f"link to '{display_path(real)}', a folder of the source "
                                                      "tree outside this category folder; not followed (its "
                                                      "files are not read through this link)"))
                return
        try:
            entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
        except OSError as exc:
            self.skipped.append(Skipped(relative, f"cannot list folder: {exc.strerror or exc}"))
            return
        self._scanned[identity] = directory
        self._open.add(identity)
        for entry in entries:
            if not entry.name.startswith("."):
                self._visit(entry, os.path.join(relative, entry.name) if relative else entry.name)
        self._open.discard(identity)

    def _revisit_reason(self, identity: tuple[int, int]) -> str:
        first = display_path(self._scanned[identity])
        if identity in self._open:  # an ancestor of the current folder: following it would never end
            return f"symlink loop: leads back to folder '{first}'; not followed"
        return f"folder already scanned as '{first}' (two paths lead to it); not read twice"

    def _visit(self, entry: os.DirEntry, relative: str) -> None:
        try:
            info = entry.stat()  # follows symlinks
        except OSError as exc:
            self.skipped.append(Skipped(relative, _stat_failure(entry, exc)))
            return
        if stat.S_ISDIR(info.st_mode):
            self._scan(entry.path, relative)
        elif not stat.S_ISREG(info.st_mode):
            self.skipped.append(Skipped(relative, f"not a regular file ({kind_of(info.st_mode)}); skipped"))
        elif not is_image_name(entry.name):
            suffix = os.path.splitext(entry.name)[1] or "none"
            self.skipped.append(Skipped(relative, f"not an image file name (suffix {suffix}; expected "
                                                  f"{', '.join(IMAGE_SUFFIXES)}); skipped"))
        else:
            self.found.append(FoundFile(relative, info.st_size, info.st_mtime_ns))


def _inside(path: str, folder: str) -> bool:
    return os.path.commonpath([path, folder]) == folder


def _identity(info: os.stat_result) -> tuple[int, int]:
    return info.st_dev, info.st_ino


def _stat_failure(entry: os.DirEntry, exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "symlink loop (too many levels of symbolic links); skipped"
    if exc.errno == errno.ENOENT and entry.is_symlink():
        return f"broken symlink (target {os.readlink(entry.path)!r} does not exist); skipped"
    return f"cannot read file information: {exc.strerror or exc}"
