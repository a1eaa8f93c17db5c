"""Atomic file output and checked input.

Every result file is written to a temporary file in the destination directory and renamed into place, so a job
killed mid-write leaves either the old file or no file, never half a file. Every output gets the same mode, that
of an ordinary new file (0644 under the usual umask), whichever library wrote it. A full disk (or another
environment failure while writing) is one ``PeftlabError`` naming the file being written, never a traceback.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from peftlab.errors import PeftlabError

_UMASK = os.umask(0)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK

# Failures of the machine, not of the code, that a write can hit: reported naming the file, as bad input is.
WRITE_FAILURES = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
}


def write_failure(target: str | os.PathLike, exc: OSError) -> PeftlabError | None:
    """The one-line error for an ``OSError`` of ``WRITE_FAILURES`` while writing ``target``; None for others."""
    reason = WRITE_FAILURES.get(exc.errno or 0)
    if reason is None:
        return None
    return PeftlabError(f"{target}: cannot write it: {reason} (nothing was replaced; free space or fix the "
                        "permissions and re-run the same command, finished work is kept)")


@contextlib.contextmanager
def write_failures_named(target: str | os.PathLike) -> Iterator[None]:
    """Turn an ``OSError`` of ``WRITE_FAILURES`` raised inside into the one-line error naming ``target``."""
    try:
        yield
    except OSError as exc:
        failure = write_failure(target, exc)
        if failure is None:
            raise
        raise failure from None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed to ``path``, on failure removed.

    The temporary file gets ``FILE_MODE`` just before the rename: writers that replace the file they are given
    (safetensors writes its own temporary file and renames it over ours, with mode 0600) would otherwise leave
    files the rest of a group or a shared cache cannot read.
    """
    target = Path(path)
    with write_failures_named(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        os.close(fd)
    tmp = Path(tmp_name)
    try:
        with write_failures_named(target):
            yield tmp
            os.chmod(tmp, FILE_MODE)
            os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON (stable bytes for DVC and diffs)."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=False, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy / torch scalars
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def write_csv_rows(path: str | os.PathLike, rows: Sequence[Mapping[str, Any]], fieldnames: Sequence[str]) -> None:
    with atomic_path(path) as tmp:
        with tmp.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(fieldnames))
            writer.writeheader()
            writer.writerows(rows)


def save_tensors(path: str | os.PathLike, tensors: Mapping[str, Any], metadata: Mapping[str, str] | None = None
                 ) -> str:
    """Save torch tensors as safetensors, atomically (contiguous copies, string metadata, canonical header);
    returns the sha256 of the file written (for the sidecar that vouches for it)."""
    from safetensors.torch import save_file

    contiguous = {name: tensor.detach().contiguous().cpu() for name, tensor in tensors.items()}
    return write_safetensors(path, lambda tmp: save_file(contiguous, tmp, metadata=dict(metadata) if metadata else None))


def write_safetensors(path: str | os.PathLike, save: Callable[[str], None]) -> str:
    """Run a safetensors writer (``save(temporary_path)``, torch or numpy flavour) atomically, canonicalise the
    header, and return the sha256 of the file as written. The library reports a failed write as a
    ``SafetensorError`` carrying the OS error code; it becomes that ``OSError`` (a full disk is then one line
    naming ``path``)."""
    from safetensors import SafetensorError

    with atomic_path(path) as tmp:
        try:
            save(str(tmp))
        except SafetensorError as exc:
            code = re.search(r"\(os error (\d+)\)", str(exc))
            if code is None:
                raise
            raise OSError(int(code.group(1)), os.strerror(int(code.group(1))), str(tmp)) from None
        canonicalize_safetensors_header(tmp)
        digest = sha256_file(tmp)
    return digest


def canonicalize_safetensors_header(path: str | os.PathLike) -> None:
    """Rewrite a safetensors file's header with its ``__metadata__`` keys sorted, in place.

    safetensors keeps metadata in a hash map whose order changes from process to process, so the same tensors
    and metadata gave different bytes (and DVC hashes) on every run. Tensor entries keep their order (already
    deterministic); the sorted header has the same length, so only the header bytes are rewritten.
    """
    with open(path, "r+b") as handle:
        size_bytes = handle.read(8)
        if len(size_bytes) != 8:
            raise PeftlabError(f"{path}: not a safetensors file (shorter than its 8-byte header size)")
        size = int.from_bytes(size_bytes, "little")
        header = json.loads(handle.read(size))
        if "__metadata__" in header:
            header = {"__metadata__": dict(sorted(header["__metadata__"].items())),
                      **{k: v for k, v in header.items() if k != "__metadata__"}}
        canonical = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
        if len(canonical) > size:
            raise PeftlabError(f"{path}: canonical safetensors header is longer than the written one")
        handle.seek(8)
        handle.write(canonical + b" " * (size - len(canonical)))


def read_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    """Read JSON, turning a missing or malformed file into a ``PeftlabError`` naming it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PeftlabError(f"{path}: {what} not found") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise PeftlabError(f"{path}: malformed {what} (line {exc.lineno}: {exc.msg})") from None


def require_keys(obj: Mapping[str, Any], keys: Iterable[str], source: str) -> None:
    """Fail naming the first missing key of ``obj`` read from ``source``."""
    for key in keys:
        if key not in obj:
            raise PeftlabError(f"{source}: missing key '{key}'")


def file_digest(path: str | os.PathLike, algorithm: str = "sha256", chunk_size: int = 1 << 22) -> str:
    """Hex digest of a file's content (sha256: ~1.1 GB/s here), read in chunks of at most 4 MiB (a multi-GB shard
    never sits in memory; a small file costs one read)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    return file_digest(path, "sha256")


def verify_sha256(path: str | os.PathLike, expected: str, recorded_in: str | os.PathLike) -> None:
    """Fail, naming ``path``, unless its content has the sha256 recorded in ``recorded_in``."""
    try:
        actual = sha256_file(path)
    except FileNotFoundError:
        raise PeftlabError(f"{path}: not found (listed in {recorded_in})") from None
    if actual != expected:
        raise PeftlabError(f"{path}: content does not match the sha256 recorded in {recorded_in} (sha256 "
                           f"{actual[:16]}…, recorded {str(expected)[:16]}…): the file was changed or corrupted "
                           "after it was written")


def link_or_copy(source: str | os.PathLike, target: str | os.PathLike) -> None:
    """Put ``source``'s bytes at ``target`` atomically: a hard link where the file system allows (no second
    copy of a checkpoint on disk), else a copy. Nothing happens when ``target`` already is ``source``."""
    source, target = Path(source), Path(target)
    with contextlib.suppress(FileNotFoundError):
        if os.path.samefile(source, target):
            return
    tmp = target.with_name(f".{target.name}.{os.getpid()}.link")
    try:
        with write_failures_named(target):
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp.unlink(missing_ok=True)
            try:
                os.link(source, tmp)
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                    raise
                shutil.copyfile(source, tmp)
                os.chmod(tmp, FILE_MODE)
            os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
