"""The notebooks of the site: discovery, declared dependencies, execution order, parameter names.

A notebook declares what it needs in its metadata, `{"paper": {"depends": ["simulate"]}}`; a dependency is
executed first and its cache key is part of the dependent's key. `"inputs": ["{committed_root}/*/metrics.json"]`
declares committed files it reads (glob patterns relative to the project root): their contents are part of
its key too. A `{name}` in a pattern is the notebook's parameter of that name in the profile being run (else
its default in the parameters cell): a list gives one pattern per element, a dict one per value, None none
at all, so each profile
depends only on the files its own parameters point at. Without declarations notebooks run in alphabetical
order.
"""
from __future__ import annotations

import ast
import itertools
import json
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

INJECTED = ("profile", "results_path", "work_dir")
"""Parameters the runner passes to every notebook on top of the profile's; each parameters cell defines them."""


class NotebookError(ValueError):
    """A notebook set that cannot be executed as declared (unknown dependency, cycle, bad parameters cell)."""


@dataclass(frozen=True)
class Notebook:
    """One source notebook: its stem, path, cells (as JSON dicts) and declared dependencies."""

    stem: str
    path: Path
    cells: tuple[dict, ...]
    depends: tuple[str, ...]
    inputs: tuple[str, ...] = ()

    @classmethod
    def read(cls, path: str | Path) -> "Notebook":
        """Read a notebook file (plain JSON; outputs are ignored everywhere in this package)."""
        path = Path(path)
        data = json.loads(path.read_text(encoding="utf-8"))
        meta = data.get("metadata", {}).get("paper", {})
        depends = meta.get("depends", [])
        if not isinstance(depends, list) or not all(isinstance(d, str) for d in depends):
            raise NotebookError(f"{path.name}: metadata.paper.depends must be a list of notebook stems")
        inputs = meta.get("inputs", [])
        if not isinstance(inputs, list) or not all(isinstance(d, str) for d in inputs):
            raise NotebookError(f"{path.name}: metadata.paper.inputs must be a list of glob patterns")
        return cls(stem=path.stem, path=path, cells=tuple(data.get("cells", [])), depends=tuple(depends),
                   inputs=tuple(inputs))

    def code(self) -> list[str]:
        """The source of every code cell."""
        return [_source(c) for c in self.cells if c.get("cell_type") == "code"]

    def parameter_names(self) -> set[str]:
        """Names assigned at top level in the cell tagged `parameters`; error if there is no such cell."""
        return set(self._parameters())

    def parameter_defaults(self) -> dict[str, Any]:
        """The parameters cell's values that are literals (names assigned an expression are left out)."""
        out = {}
        for name, node in self._parameters().items():
            try:
                out[name] = ast.literal_eval(node)
            except ValueError:
                continue
        return out

    def _parameters(self) -> dict[str, ast.expr]:
        """Name -> assigned expression of each top-level assignment in the cell tagged `parameters`."""
        for cell in self.cells:
            if cell.get("cell_type") == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
                try:
                    tree = ast.parse(_source(cell))
                except SyntaxError as err:
                    raise NotebookError(f"{self.path.name}: parameters cell does not parse: {err}") from None
                names: dict[str, ast.expr] = {}
                for node in tree.body:
                    targets = node.targets if isinstance(node, ast.Assign) else (
                        [node.target] if isinstance(node, ast.AnnAssign) else [])
                    value = getattr(node, "value", None)
                    names.update((t.id, value) for t in targets if isinstance(t, ast.Name) and value is not None)
                return names
        raise NotebookError(f"{self.path.name}: no code cell tagged 'parameters'")

    def input_patterns(self, params: dict[str, Any]) -> tuple[str, ...]:
        """The declared input patterns with their `{name}` placeholders filled from ``params`` (a profile's
        parameters of this notebook) or the parameters cell's defaults (see the module docstring)."""
        defaults = self.parameter_defaults()
        out: list[str] = []
        for pattern in self.inputs:
            names = [f for _, f, _, _ in string.Formatter().parse(pattern) if f is not None]
            choices = []
            for name in names:
                if name not in params and name not in defaults:
                    raise NotebookError(f"{self.path.name}: input pattern {pattern!r} names {name!r}, which is "
                                        "not a literal parameter of its parameters cell")
                value = params.get(name, defaults.get(name))
                values = list(value.values()) if isinstance(value, dict) else \
                    value if isinstance(value, (list, tuple)) else [] if value is None else [value]
                choices.append([str(v) for v in values])
            for combo in itertools.product(*choices):
                out.append(pattern.format(**dict(zip(names, combo))))
        return tuple(out)


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def discover(notebooks_dir: str | Path) -> dict[str, Notebook]:
    """The notebooks directly in `notebooks_dir` (not in subfolders), by stem."""
    return {p.stem: Notebook.read(p) for p in sorted(Path(notebooks_dir).glob("*.ipynb"))}


def execution_order(notebooks: dict[str, Notebook]) -> list[str]:
    """Stems in dependency order, ties broken alphabetically; raises NotebookError on unknown deps or cycles."""
    for nb in notebooks.values():
        for dep in nb.depends:
            if dep not in notebooks:
                raise NotebookError(f"{nb.path.name} depends on {dep!r}, which is not a notebook here")
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(stem: str, chain: list[str]) -> None:
        if state.get(stem) == "done":
            return
        if state.get(stem) == "active":
            raise NotebookError("dependency cycle: " + " -> ".join(chain + [stem]))
        state[stem] = "active"
        for dep in sorted(notebooks[stem].depends):
            visit(dep, chain + [stem])
        state[stem] = "done"
        order.append(stem)

    for stem in sorted(notebooks):
        visit(stem, [])
    return order


def with_dependencies(notebooks: dict[str, Notebook], stems: list[str]) -> set[str]:
    """`stems` and everything they depend on, transitively."""
    out: set[str] = set()
    todo = list(stems)
    while todo:
        stem = todo.pop()
        if stem not in out:
            out.add(stem)
            todo.extend(notebooks[stem].depends)
    return out
