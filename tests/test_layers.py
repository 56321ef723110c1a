"""The package's layering, read off the import statements: config -> build -> loop -> run folder -> report.

No module below the entrypoint reaches back up, and the loop builds nothing:
each rule below is one module and the skipexp modules it must not import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "skipexp"
RULES = {  # module file -> prefixes of skipexp modules it must not import
    "train.py": ("skipexp.models", "skipexp.data", "skipexp.build", "skipexp.cli", "skipexp.config"),
    "rundir.py": ("skipexp",),
    "runtime.py": ("skipexp.models", "skipexp.data", "skipexp.build", "skipexp.train"),
    "optim.py": ("skipexp.models", "skipexp.data", "skipexp.build", "skipexp.train"),
    "datacli.py": ("skipexp.cli", "skipexp.train", "skipexp.build"),
    "files.py": ("skipexp.models", "skipexp.data", "skipexp.runtime", "skipexp.train"),
    "checks.py": ("skipexp.models", "skipexp.data", "skipexp.runtime", "skipexp.train"),
    "build.py": ("skipexp.cli",),
    "models": ("skipexp.runtime", "skipexp.optim", "skipexp.train", "skipexp.build", "skipexp.data"),
    "data": ("skipexp.models", "skipexp.runtime", "skipexp.train", "skipexp.build", "skipexp.cli"),
    "report": ("skipexp.models", "skipexp.runtime", "skipexp.gradflow", "skipexp.train", "skipexp.build",
               "skipexp.cli", "skipexp.data"),
}


def imported(path: Path) -> set[str]:
    """The modules a file imports (``from a.b import c`` counts as a.b and a.b.c)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


@pytest.mark.parametrize("where,forbidden", RULES.items(), ids=list(RULES))
def test_no_module_reaches_back_up(where, forbidden):
    target = PACKAGE / where
    files = sorted(target.rglob("*.py")) if target.is_dir() else [target]
    assert files
    for path in files:
        bad = sorted(n for n in imported(path) if n.startswith(forbidden))
        assert not bad, f"{path.relative_to(PACKAGE.parent)} imports {bad}"


def test_the_builder_is_the_only_module_that_builds_the_network_for_a_run():
    """Four places built a run's parts; now the builder does (and the bench and tests may call it)."""
    users = sorted(p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")
                   if "build_model(" in p.read_text() and p.parent.name != "models")
    assert users == ["build.py"]


def test_train_is_about_eighty_lines_and_four_levels_deep():
    tree = ast.parse((PACKAGE / "train.py").read_text())
    train = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "train")
    assert train.end_lineno - train.lineno + 1 <= 80

    def depth(node: ast.AST, level: int = 0) -> int:
        blocks = (ast.For, ast.While, ast.If, ast.With, ast.Try)
        inner = [depth(c, level + isinstance(c, blocks)) for c in ast.iter_child_nodes(node)]
        return max([level, *inner])

    assert depth(train) <= 4
