"""Read-only file trees over a folder, a .zip or a .tar.gz, with safe member names, checksums and layout detection."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import posixpath
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path
from typing import Sequence

from iid_distill.data.specs import DataError, IMAGE_EXTENSIONS


class _Tree:
    """Read-only view of a folder or an archive: regular files keyed by relative POSIX path."""

    location: str
    files: frozenset[str]

    def read(self, name: str) -> bytes:
        raise NotImplementedError

    def describe(self, name: str) -> str:
        return f"{self.location}:{name}" if name else self.location

    def close(self) -> None:
        pass

    def __enter__(self) -> _Tree:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


MAX_ARCHIVE_BYTES = 4 << 30  # a .tar(.gz) is read whole into memory: beyond this, extract it and pass the folder


def folder_files(root: Path) -> list[tuple[str, Path]]:
    """(relative POSIX name, path) of every file under ``root``, sorted; a FIFO, device or socket (also behind a
    link) is an error, since reading it would hang or never end."""
    found = []
    for directory, subdirs, files in os.walk(root, onerror=_walk_error):
        subdirs.sort()
        relative = Path(directory).relative_to(root)
        for name in sorted(files):
            path = Path(directory, name)
            try:
                regular = stat.S_ISREG(path.stat().st_mode)
            except OSError as error:
                raise DataError(f"cannot read {path} ({_one_line(error)}); check the file and its permissions") from None
            if not regular:
                raise DataError(f"{path}: not a regular file (a FIFO, device or socket, or a link to one); a source folder holds only files")
            found.append(((relative / name).as_posix(), path))
    return found


class _FolderTree(_Tree):
    def __init__(self, root: Path):
        self.root = root
        self.location = str(root)
        self.files = frozenset(name for name, _ in folder_files(root))

    def read(self, name: str) -> bytes:
        try:
            return (self.root / name).read_bytes()
        except OSError as error:
            raise DataError(f"cannot read {self.root / name} ({_one_line(error)}); check the file and its permissions") from error

    def describe(self, name: str) -> str:
        return str(self.root / name) if name else self.location


class _ZipTree(_Tree):
    def __init__(self, path: Path):
        self.location = str(path)
        self._zip = zipfile.ZipFile(path)
        try:
            self._index()
        except BaseException:
            self._zip.close()
            raise

    def _index(self) -> None:
        self._members: dict[str, str] = {}  # file name -> member name holding its bytes (links resolved)
        links = {}
        path = Path(self.location)
        for info in self._zip.infolist():
            name = _safe_member_name(info.filename, path)
            if name is None or info.is_dir():
                continue
            if stat.S_ISLNK(info.external_attr >> 16):
                links[name] = _safe_link_target(name, self._zip.read(info).decode("utf-8", "replace"), path, symbolic=True)
            else:
                self._members[name] = info.filename
        for name, target in links.items():
            if target in self._members:
                self._members[name] = self._members[target]
        self.files = frozenset(self._members)

    def read(self, name: str) -> bytes:
        try:
            return self._zip.read(self._members[name])
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as error:
            raise DataError(f"cannot read {self.describe(name)} ({_one_line(error)}): the archive is corrupt; re-download it") from error

    def close(self) -> None:
        self._zip.close()


class _TarTree(_Tree):
    """A tar archive read whole into memory (gzip cannot seek, so one pass is the fast way), checked for completeness."""

    def __init__(self, path: Path):
        self.location = str(path)
        self._data: dict[str, bytes] = {}
        archive_bytes = _archive_bytes(path)
        links = {}
        with tarfile.open(fileobj=io.BytesIO(archive_bytes), mode="r:") as archive:
            for member in archive:
                name = _safe_member_name(member.name, path)
                if name is None or member.isdir():
                    continue
                if member.issym() or member.islnk():
                    links[name] = _safe_link_target(name, member.linkname, path, symbolic=member.issym())
                elif member.isfile():
                    self._data[name] = archive.extractfile(member).read()
                else:
                    raise DataError(f"unsafe archive {path}: member {member.name!r} is a device or fifo; re-create the archive with regular files only")
            end = archive.offset  # where reading stopped: a whole archive has two zero blocks here
        if len(archive_bytes) < end + 2 * tarfile.BLOCKSIZE or any(archive_bytes[end:end + 2 * tarfile.BLOCKSIZE]):
            raise DataError(f"cannot read archive {path}: it stops without the end-of-archive marker after {len(self._data)} files "
                            "(truncated or damaged); re-create or re-download it")
        for name, target in links.items():
            if target in self._data:
                self._data[name] = self._data[target]
        self.files = frozenset(self._data)

    def read(self, name: str) -> bytes:
        return self._data[name]


def _archive_bytes(path: Path, chunk: int = 64 << 20) -> bytes:
    """The tar bytes of ``path`` (gunzipped when compressed, CRC and length checked), at most MAX_ARCHIVE_BYTES."""
    too_big = DataError(f"{path}: more than {MAX_ARCHIVE_BYTES >> 20} MiB once unpacked, too much to hold in memory; "
                        "extract it and pass the folder as the source")
    if path.stat().st_size > MAX_ARCHIVE_BYTES:
        raise too_big
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":
        return raw
    parts, total = [], 0
    with gzip.GzipFile(fileobj=io.BytesIO(raw)) as stream:
        while block := stream.read(chunk):
            total += len(block)
            if total > MAX_ARCHIVE_BYTES:
                raise too_big
            parts.append(block)
    return b"".join(parts)


def _walk_error(error: OSError) -> None:
    """``os.walk`` skips folders it cannot list; a skipped class folder would silently drop its images."""
    raise DataError(f"cannot list folder {error.filename} ({error.strerror}); fix its permissions: no image may be left out")


def _open_tree(path: Path, md5_table: dict[str, str]) -> _Tree:
    """A tree for a folder, .zip, .tar, .tar.gz or .tgz; archives listed in ``md5_table`` are checked first."""
    if path.is_dir():
        return _FolderTree(path)
    if not path.is_file():
        raise DataError(f"source {path} does not exist; pass an existing folder or archive")
    lower = path.name.lower()
    if not lower.endswith((".zip", ".tar", ".tar.gz", ".tgz")):
        raise DataError(f"unsupported source {path}: expected a folder, .zip, .tar, .tar.gz or .tgz")
    if path.name in md5_table:
        _check_md5(_md5_file(path), md5_table[path.name], str(path))
    try:
        return _ZipTree(path) if lower.endswith(".zip") else _TarTree(path)
    except (tarfile.TarError, zipfile.BadZipFile, zlib.error, EOFError, OSError) as error:  # BadGzipFile is an OSError
        raise DataError(f"cannot read archive {path} ({_one_line(error)}): it is corrupt or truncated; re-create or re-download it") from error


def _safe_member_name(name: str, archive: Path) -> str | None:
    """The normalised relative name of an archive member; None for the root itself; unsafe names are errors."""
    clean = name.replace("\\", "/")
    if clean.startswith("/") or (len(clean) > 1 and clean[1] == ":"):
        raise DataError(f"unsafe archive {archive}: member {name!r} has an absolute path; refusing to read it (re-create the archive with relative paths)")
    clean = posixpath.normpath(clean)
    if clean == ".." or clean.startswith("../"):
        raise DataError(f"unsafe archive {archive}: member {name!r} escapes the archive root; refusing to read it (re-create the archive without '..')")
    return None if clean == "." else clean


def _safe_link_target(name: str, target: str, archive: Path, symbolic: bool) -> str:
    """Archive-relative target of a link member; links pointing outside the archive are errors."""
    clean = target.replace("\\", "/")
    # symlinks resolve relative to their folder, tar hard links relative to the archive root
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), clean) if symbolic else clean)
    if clean.startswith("/") or resolved == ".." or resolved.startswith("../"):
        raise DataError(f"unsafe archive {archive}: link {name!r} points outside the archive ({target!r}); refusing to read it")
    return resolved


def _top_prefixes(files: frozenset[str]) -> list[str]:
    """Candidate roots: the tree root, plus its single top-level folder when everything lies inside one."""
    tops = {name.split("/", 1)[0] for name in files if "/" in name}
    if len(tops) == 1 and all("/" in name for name in files):
        return ["", f"{tops.pop()}/"]
    return [""]


def _find_root(files: frozenset[str], markers: Sequence[tuple[str, ...]], subfolders: Sequence[str]) -> str | None:
    """First prefix under which every marker file exists (a marker lists accepted alternative names)."""
    for top in _top_prefixes(files):
        for sub in subfolders:
            prefix = top + sub
            if all(any(prefix + name in files for name in alternatives) for alternatives in markers):
                return prefix
    return None


def _closest_root(files: frozenset[str], markers: Sequence[tuple[str, ...]], subfolders: Sequence[str]) -> tuple[str, list[str] | None]:
    """The candidate prefix holding some but not all markers (the most), with the missing ones; (\"\", None) if none."""
    best: tuple[str, list[str] | None] = ("", None)
    for top in _top_prefixes(files):
        for sub in subfolders:
            missing = [alternatives[0] for alternatives in markers if not any(top + sub + name in files for name in alternatives)]
            if len(missing) < len(markers) and (best[1] is None or len(missing) < len(best[1])):
                best = (top + sub, missing)
    return best


def _find_image_folder_root(files: frozenset[str]) -> str | None:
    for top in _top_prefixes(files):
        if _has_folder(files, top + "train/") and (_has_folder(files, top + "test/") or _has_folder(files, top + "val/")):
            return top
    return None


def _has_folder(files: frozenset[str], prefix: str) -> bool:
    return any(name.startswith(prefix) for name in files)


def _is_image_name(name: str) -> bool:
    """An image file by extension, not hidden (e.g. macOS ``._*`` resource files in archives)."""
    return name.lower().endswith(IMAGE_EXTENSIONS) and not any(part.startswith(".") for part in name.split("/"))


def _md5_file(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _check_md5(actual: str, expected: str, where: str) -> None:
    if actual != expected:
        raise DataError(
            f"{where}: md5 {actual} does not match the official {expected}; the file is corrupt or not the official release: "
            f"re-download it, pass the right file, or disable checksums if it is a deliberate local copy"
        )


def _read_checked(tree: _Tree, name: str, md5_table: dict[str, str]) -> bytes:
    data = tree.read(name)
    base = posixpath.basename(name)
    if base in md5_table:
        _check_md5(hashlib.md5(data).hexdigest(), md5_table[base], tree.describe(name))
    return data


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__
