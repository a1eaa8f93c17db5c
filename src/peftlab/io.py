"""Atomic file output and checked input.

Every result file is written to a temporary file in the destination directory and renamed into place, so a job
killed mid-write leaves either the old file or no file, never half a file.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from peftlab.errors import PeftlabError

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed to ``path``, on failure removed."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; results are shared, so use the usual mode
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
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


def save_tensors(path: str | os.PathLike, tensors: Mapping[str, Any], metadata: Mapping[str, str] | None = None) -> None:
    """Save torch tensors as safetensors, atomically (contiguous copies, string metadata, canonical header)."""
    from safetensors.torch import save_file

    contiguous = {name: tensor.detach().contiguous().cpu() for name, tensor in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(contiguous, str(tmp), metadata=dict(metadata) if metadata else None)
        canonicalize_safetensors_header(tmp)


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


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()
