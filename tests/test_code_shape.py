"""The shape the code keeps (architecture issue): short functions, and no test oracle reachable from production."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "iid_distill"
MAX_FUNCTION_LINES = 80


def test_no_function_in_the_package_is_over_80_lines():
    long = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES:
                long.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert not long, "split by concern: " + "; ".join(long)


def test_the_authors_per_class_loop_is_only_a_test_oracle():
    assert not any("reference_per_class_step" in path.read_text() for path in SRC.rglob("*.py"))
