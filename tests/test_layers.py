"""The import layers: datasets <- fdp_jax, dkt_jax (never each other) <- launch.

Every ``import``/``from ... import`` of every module (at any depth, including imports inside functions)
is read with ``ast``; a violation names the file and line.
"""
from __future__ import annotations

import ast
import os

import pytest

from tests.conftest import REPO_ROOT

# package -> top-level project packages it must not import
FORBIDDEN = {
    "datasets": {"launch", "fdp_jax", "dkt_jax"},
    "fdp_jax": {"launch", "dkt_jax"},
    "dkt_jax": {"launch", "fdp_jax"},
}


def imported_packages(path: str) -> list[tuple[int, str]]:
    """(line, top-level package) of every absolute import in the Python file at ``path``."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), filename=path)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module.split(".")[0]))
    return out


def violations(package: str) -> list[str]:
    found = []
    for root, _, files in os.walk(os.path.join(REPO_ROOT, package)):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(root, name)
                for line, imported in imported_packages(path):
                    if imported in FORBIDDEN[package]:
                        found.append(f"{os.path.relpath(path, REPO_ROOT)}:{line} imports {imported}")
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_import_climbs_a_layer(package):
    assert violations(package) == []


def test_the_checker_sees_a_violation(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import os\n\ndef f():\n    from launch.runtime import mesh\n    import dkt_jax.models\n")
    assert imported_packages(str(bad)) == [(1, "os"), (4, "launch"), (5, "dkt_jax")]
