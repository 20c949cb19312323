"""No module imports from a layer above its own (DESIGN.md: imports point down only)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "twofold"
RANK = {"core": 0, "fsinfo": 1, "vm": 1, "blobs": 2, "sets": 2, "vault": 3, "chunks": 4,
        "backup": 5, "image": 5, "rescue": 5, "jobs": 6, "cli": 7, "web": 7}


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "twofold" and parts[1] in RANK else None


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
    return found


def test_every_layer_is_known() -> None:
    for d in SRC.iterdir():
        if d.is_dir() and not d.name.startswith("_"):
            assert d.name in RANK, f"{d.name}/ is not placed in a layer"


def test_imports_point_down() -> None:
    wrong = []
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC.parent)
        own = _layer(".".join(rel.with_suffix("").parts))
        if own is None:
            continue
        for mod in _imports(path):
            other = _layer(mod)
            if other is not None and RANK[other] > RANK[own]:
                wrong.append(f"{rel} ({own}) imports {mod} ({other})")
    assert not wrong, "\n".join(wrong)


def test_checker_catches_an_upward_import(tmp_path: Path) -> None:
    bad = tmp_path / "x.py"
    bad.write_text("from twofold.cli.app import app\n")
    assert _layer(_imports(bad)[0]) == "cli"


def test_every_module_has_a_docstring() -> None:
    missing = [str(p.relative_to(SRC)) for p in SRC.rglob("*.py")
               if ast.get_docstring(ast.parse(p.read_text())) is None]
    assert not missing, missing
