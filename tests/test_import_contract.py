"""The house rule of ARCHITECTURE §1, checked on the source: imports run one way.

``tracker.core`` imports nothing else of the project; ``engines/`` and ``calibration/`` import only
``tracker.core`` of ``tracker``. Every import statement is read with :mod:`ast`, those inside functions
included, so a lazy import cannot hide a violation.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ("tracker", "engines", "calibration", "tools")


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every absolute import of a project package in one file."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module))
            # `from tracker import assets` imports the module tracker.assets
            out += [(node.lineno, f"{node.module}.{a.name}") for a in node.names if node.module in PROJECT]
    return [(line, m) for line, m in out if m.split(".")[0] in PROJECT]


def violations(package: str, allowed: tuple[str, ...]) -> list[str]:
    bad = []
    for path in sorted((ROOT / package.replace(".", "/")).rglob("*.py")):
        for line, module in imported_modules(path):
            if module.split(".")[0] == package.split(".")[0] and module.startswith(package):
                continue  # inside the package itself
            if not any(module == a or module.startswith(a + ".") for a in allowed):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    return bad


@pytest.mark.parametrize(
    ("package", "allowed"),
    [
        ("tracker.core", ()),
        ("engines", ("tracker.core",)),
        ("calibration", ("tracker.core",)),
    ],
)
def test_imports_run_one_way(package, allowed):
    assert violations(package, allowed) == []


def test_the_checker_sees_a_violation(tmp_path, monkeypatch):
    # The check itself must be able to fail: a lazy import inside a function is found.
    pkg = tmp_path / "engines"
    pkg.mkdir()
    (pkg / "bad.py").write_text("def f():\n    from tracker.pipeline import Pipeline\n    import tracker.core.types\n")
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    assert violations("engines", ("tracker.core",)) == ["engines/bad.py:2 imports tracker.pipeline"]
