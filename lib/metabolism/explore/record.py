"""The append-only JSONL log of an exploration, and the state rebuilt from it.

Every line is one JSON object with an "event":

* ``started``   an iteration was dispatched (id, round, slot, role, parent, mutation, params, overrides,
                proposer, reasoning, hypothesis, attempt, run_dir);
* ``finished``  the same fields plus status ("ok"/"failed"), metrics, score, wall_time, error;
* ``rejected``  a proposal that was not run, with the reason;
* ``llm_invalid`` / ``llm_error`` / ``skipped``  a malformed reply, a failed request, slots left empty;
* ``memory``    a memory text written by a language model;
* ``session``   a start or resume of the loop.

Each line is flushed and fsynced before the loop goes on, so the log alone is enough to resume: an iteration
with a ``started`` but no ``finished`` line was interrupted.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def _clean(obj: Any) -> Any:
    """JSON-safe copy: numpy scalars/arrays to Python, non-finite floats to None."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):
        return _clean(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


class ExplorationLog:
    """Append-only JSONL file; a torn last line (from a crash mid-write) is cut off on open."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._repair()

    def _repair(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
            with open(self.path, "r+b") as fh:
                fh.truncate(keep)
                fh.flush()
                os.fsync(fh.fileno())

    def append(self, record: dict) -> dict:
        """Write one record (a "time" field is added) and fsync it; returns the record as written."""
        record = _clean({**record, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        line = json.dumps(record, sort_keys=False) + "\n"
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
        return record

    def records(self) -> list[dict]:
        return read_log(self.path)


def read_log(path: str | Path) -> list[dict]:
    """All complete records of a log (a torn or unparsable line is skipped)."""
    path = Path(path)
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


@dataclass
class LogState:
    """What the log says: iterations (started fields merged with finished ones), rounds, memory."""

    iterations: dict[int, dict] = field(default_factory=dict)
    n_started: dict[int, int] = field(default_factory=dict)
    last_round: int = -1
    memory: str | None = None
    n_rejected: int = 0
    n_skipped: int = 0
    settings: dict | None = None

    @classmethod
    def from_records(cls, records: list[dict]) -> "LogState":
        st = cls()
        for rec in records:
            st.apply(rec)
        return st

    def apply(self, rec: dict) -> None:
        """Update the state with one more record."""
        ev = rec.get("event")
        if isinstance(rec.get("round"), int):
            self.last_round = max(self.last_round, rec["round"])
        if ev in ("started", "finished"):
            i = int(rec["iteration"])
            merged = self.iterations.setdefault(i, {})
            if ev == "started":
                self.n_started[i] = self.n_started.get(i, 0) + 1
                if merged.get("finished"):
                    return
            merged.update({k: v for k, v in rec.items() if k not in ("event", "time")})
            merged["finished"] = ev == "finished"
        elif ev == "memory":
            self.memory = rec.get("text")
        elif ev == "rejected":
            self.n_rejected += 1
        elif ev == "skipped":
            self.n_skipped += int(rec.get("n", 0))
        elif ev == "session" and isinstance(rec.get("settings"), dict):
            self.settings = rec["settings"]

    def finished(self) -> list[dict]:
        return [it for _, it in sorted(self.iterations.items()) if it.get("finished")]

    def unfinished(self) -> list[dict]:
        return [it for _, it in sorted(self.iterations.items()) if not it.get("finished")]

    def next_id(self) -> int:
        return max(self.iterations, default=-1) + 1
