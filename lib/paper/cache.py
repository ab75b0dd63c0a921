"""Content-hash cache of executed notebooks.

The key of a notebook under a profile is the SHA-256 of:
  - its cells (type, source and tags; never outputs, execution counts or ids),
  - the profile name and the notebook's parameters for it,
  - every lib/ module it imports, closed over the imports between lib/ modules (absolute and relative; a
    module's parent packages' ``__init__.py`` too), and the .yaml/.yml files of the packages involved
    (package data: regimes, configs), so that editing one module re-executes only the notebooks that reach it,
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
from typing import Any, Iterable

from common.io import write_json

from .notebooks import Notebook

SCHEME = 2
"""Version of the key layout; bumping it invalidates every cached execution (2: lib/ by module, not package)."""

DATA_SUFFIXES = (".yaml", ".yml")
_MAGIC = re.compile(r"^\s*[%!].*$", re.MULTILINE)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _parse(source: str) -> ast.Module | None:
    """``source`` as Python, IPython magics and shell escapes blanked; None if it still does not parse."""
    for text in (source, _MAGIC.sub("", source)):
        try:
            return ast.parse(text)
        except SyntaxError:
            continue
    return None


def imported_names(source: str, package: str | None = None) -> set[str]:
    """Dotted names that ``source`` may import: ``import a.b`` gives a.b; ``from a import b`` gives a and a.b
    (b may be a submodule or an attribute). Relative imports resolve against ``package`` (the dotted package
    the source lives in) and are skipped without one."""
    tree = _parse(source)
    names: set[str] = set()
    if tree is None:
        return names
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if package is None:
                    continue
                parts = package.split(".")
                if node.level - 1 > len(parts) - 1:
                    continue
                base = ".".join(parts[:len(parts) - (node.level - 1)] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
    return {n for n in names if n}


def _module_file(lib_dir: Path, dotted: str) -> Path | None:
    base = lib_dir.joinpath(*dotted.split("."))
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def _package_of(lib_dir: Path, path: Path) -> str:
    return ".".join(path.relative_to(lib_dir).with_suffix("").parts[:-1])


def module_closure(sources: Iterable[str], lib_dir: str | Path) -> list[Path]:
    """The lib/ files that ``sources`` execute when run: the modules they import, every parent package's
    ``__init__.py``, closed over the imports of those files; plus the data files (.yaml/.yml) of each top-level
    package reached. Sorted; imports of anything outside lib/ are ignored."""
    lib_dir = Path(lib_dir)
    found: set[Path] = set()
    todo = [name for s in sources for name in imported_names(s)]
    while todo:
        dotted = todo.pop()
        parts = dotted.split(".")
        for i in range(1, len(parts) + 1):
            f = _module_file(lib_dir, ".".join(parts[:i]))
            if f is None or f in found:
                continue
            found.add(f)
            todo.extend(imported_names(f.read_text(encoding="utf-8"), _package_of(lib_dir, f)))
    tops = {f.relative_to(lib_dir).parts[0] for f in found if len(f.relative_to(lib_dir).parts) > 1}
    data = {f for t in tops for f in (lib_dir / t).rglob("*")
            if f.is_file() and f.suffix in DATA_SUFFIXES and "__pycache__" not in f.parts}
    return sorted(found | data)


def lib_digests(files: Iterable[Path], lib_dir: str | Path) -> dict[str, str]:
    """SHA-256 of each lib/ file, by its path relative to ``lib_dir``."""
    return {f.relative_to(lib_dir).as_posix(): _sha(f.read_bytes()) for f in files}


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
    parts = {
        "scheme": SCHEME,
        "notebook": notebook_digest(nb),
        "profile": profile,
        "parameters": _sha(json.dumps(params, sort_keys=True).encode()),
        "lib": lib_digests(module_closure(nb.code(), lib_dir), lib_dir),
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
        return "cache scheme changed"
    if old.get("notebook") != new["notebook"]:
        reasons.append("notebook cells changed")
    if old.get("profile") != new["profile"]:
        reasons.append("profile changed")
    if old.get("parameters") != new["parameters"]:
        reasons.append("parameters changed")
    old_lib, new_lib = old.get("lib", {}), new["lib"]
    changed = sorted(p for p in set(old_lib) | set(new_lib) if old_lib.get(p) != new_lib.get(p))
    if changed:
        shown = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
        reasons.append(f"lib code changed ({shown})")
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
