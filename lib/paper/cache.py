"""Content-hash cache of executed notebooks.

The key of a notebook under a profile is the SHA-256 of:
  - its cells (type, source and tags; never outputs, execution counts or ids),
  - the profile name and the notebook's parameters for it,
  - every .py/.yaml/.yml file of the lib/ packages it imports, closed over imports between lib/ packages,
  - the keys of the notebooks it declares as dependencies,
  - the contents of the committed files it declares as inputs (metadata ``paper.inputs``), if any.
The manifest next to the executed notebooks records the key and its parts, so a rerun can say what changed.
"""
from __future__ import annotations

import ast
import hashlib
import json
import re
from pathlib import Path
from typing import Any

from common.io import write_json

from .notebooks import Notebook

SCHEME = 1
"""Version of the key layout; bumping it invalidates every cached execution."""

SOURCE_SUFFIXES = (".py", ".yaml", ".yml")
_IMPORT_RE = re.compile(r"^\s*(?:from|import)\s+([A-Za-z_][A-Za-z0-9_]*)", re.MULTILINE)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def lib_packages(lib_dir: str | Path) -> set[str]:
    """Top-level packages in `lib_dir`: directories with an identifier name holding Python files."""
    lib_dir = Path(lib_dir)
    if not lib_dir.is_dir():
        return set()
    return {p.name for p in lib_dir.iterdir()
            if p.is_dir() and p.name.isidentifier() and any(p.rglob("*.py"))}


def imported_modules(source: str) -> set[str]:
    """Top-level names of modules imported by `source` (absolute imports only).

    Parsed with ast; lines that do not parse (IPython magics, shell escapes) fall back to a regex.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set(_IMPORT_RE.findall(source))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _package_files(package_dir: Path) -> list[Path]:
    return sorted(p for p in package_dir.rglob("*")
                  if p.is_file() and p.suffix in SOURCE_SUFFIXES and "__pycache__" not in p.parts)


def package_closure(sources: list[str], lib_dir: str | Path) -> set[str]:
    """lib/ packages imported by `sources`, plus those the imported packages import themselves."""
    lib_dir = Path(lib_dir)
    known = lib_packages(lib_dir)
    found: set[str] = set()
    todo = [m for s in sources for m in imported_modules(s) if m in known]
    while todo:
        pkg = todo.pop()
        if pkg in found:
            continue
        found.add(pkg)
        for f in _package_files(lib_dir / pkg):
            if f.suffix == ".py":
                todo.extend(m for m in imported_modules(f.read_text(encoding="utf-8")) if m in known)
    return found


def package_digest(package_dir: str | Path) -> str:
    """Hash of the relative paths and bytes of every .py/.yaml/.yml file under `package_dir`."""
    package_dir = Path(package_dir)
    h = hashlib.sha256()
    for f in _package_files(package_dir):
        h.update(f.relative_to(package_dir).as_posix().encode() + b"\0")
        h.update(f.read_bytes() + b"\0")
    return h.hexdigest()


def notebook_digest(nb: Notebook) -> str:
    """Hash of the cells' type, source and tags (outputs, ids and execution counts excluded)."""
    cells = [[c.get("cell_type"), "".join(c.get("source", "")), sorted(c.get("metadata", {}).get("tags", []))]
             for c in nb.cells]
    return _sha(json.dumps(cells).encode())


def input_digests(patterns: tuple[str, ...], root: str | Path) -> dict[str, str]:
    """SHA-256 of every file matching the glob ``patterns`` under ``root``, by path relative to it."""
    root = Path(root)
    files = sorted({f for pat in patterns for f in root.glob(pat) if f.is_file()})
    return {f.relative_to(root).as_posix(): _sha(f.read_bytes()) for f in files}


def key_parts(nb: Notebook, profile: str, params: dict[str, Any], lib_dir: str | Path,
              dependency_keys: dict[str, str], root: str | Path | None = None) -> dict[str, Any]:
    """The named ingredients of a notebook's cache key (see the module docstring); declared input files
    (``nb.inputs`` with ``params`` filled in, relative to ``root``, default the parent of ``lib_dir``) only
    when it declares any."""
    packages = package_closure(nb.code(), lib_dir)
    parts = {
        "scheme": SCHEME,
        "notebook": notebook_digest(nb),
        "profile": profile,
        "parameters": _sha(json.dumps(params, sort_keys=True).encode()),
        "packages": {p: package_digest(Path(lib_dir) / p) for p in sorted(packages)},
        "depends": dict(sorted(dependency_keys.items())),
    }
    if nb.inputs:
        parts["inputs"] = input_digests(nb.input_patterns(params), root if root is not None else Path(lib_dir).parent)
    return parts


def cache_key(parts: dict[str, Any]) -> str:
    """The cache key: SHA-256 of the canonical JSON of `key_parts`."""
    return _sha(json.dumps(parts, sort_keys=True).encode())


def explain_change(old: dict[str, Any] | None, new: dict[str, Any]) -> str:
    """A short human reason why `new` differs from the parts recorded in `old`."""
    if not old:
        return "no previous execution recorded"
    reasons = []
    if old.get("scheme") != new["scheme"]:
        reasons.append("cache scheme changed")
    if old.get("notebook") != new["notebook"]:
        reasons.append("notebook cells changed")
    if old.get("profile") != new["profile"]:
        reasons.append("profile changed")
    if old.get("parameters") != new["parameters"]:
        reasons.append("parameters changed")
    old_pkgs, new_pkgs = old.get("packages", {}), new["packages"]
    changed = sorted(p for p in set(old_pkgs) | set(new_pkgs) if old_pkgs.get(p) != new_pkgs.get(p))
    if changed:
        reasons.append("lib code changed (" + ", ".join(changed) + ")")
    if old.get("depends") != new["depends"]:
        reasons.append("a dependency was re-executed")
    if old.get("inputs") != new.get("inputs"):
        reasons.append("declared input files changed")
    return "; ".join(reasons) or "unknown change"


class Manifest:
    """`manifest.json` in an executed-notebooks directory: one record per notebook, written atomically."""

    FILENAME = "manifest.json"

    def __init__(self, directory: str | Path, profile: str):
        self.path = Path(directory) / self.FILENAME
        self.profile = profile
        self.entries: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            data = json.loads(self.path.read_text(encoding="utf-8"))
            self.entries = dict(data.get("notebooks", {}))

    def get(self, stem: str) -> dict[str, Any] | None:
        return self.entries.get(stem)

    def set(self, stem: str, entry: dict[str, Any]) -> None:
        """Record `entry` for `stem` and save the manifest."""
        self.entries[stem] = entry
        self.save()

    def save(self) -> None:
        write_json(self.path, {"profile": self.profile, "notebooks": dict(sorted(self.entries.items()))})
