"""Atomic file writes: write to a temporary name in the target's directory, then ``os.replace``, so that a
crash or an error never leaves a half-written file under the real name."""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def readable(path: str | Path, directory: bool = False) -> None:
    """Give a file made by mkstemp/mkdtemp (private by default) the usual permissions under the umask."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


@contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; it replaces ``path`` on success and is removed on error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        readable(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, data: Any) -> None:
    """Write ``data`` as indented JSON atomically (numpy/torch scalars and arrays, and paths, are converted)."""
    write_text(path, json.dumps(data, indent=2, default=_to_builtin) + "\n")


def write_npz(path: str | Path, **arrays: Any) -> None:
    """Write compressed numpy arrays atomically."""
    import numpy as np

    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)


def save_torch(obj: Any, path: str | Path) -> None:
    """``torch.save`` atomically, flushed to disk before the rename (checkpoints survive a killed session)."""
    import torch

    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save(obj, fh)
        fh.flush()
        os.fsync(fh.fileno())


def _to_builtin(obj: Any) -> Any:
    for name in ("tolist", "item"):
        if hasattr(obj, name):
            return getattr(obj, name)()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


class CheckpointMismatch(RuntimeError):
    """A checkpoint made with a different configuration (or format) than the one asked for."""
