"""Packages by audience: sandbox and codec run without Django; production never imports the sandbox."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = ("statussync", "bxsync_project")


def test_it_imports_the_sandbox_and_the_codec_without_django() -> None:
    code = (
        "import sys, bitrix_sandbox, bitrix_sandbox.__main__, phpquery; "
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'django'); "
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=30)


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_it_keeps_the_sandbox_out_of_production_code() -> None:
    offenders = []
    for package in PRODUCTION:
        for path in sorted((ROOT / package).rglob("*.py")):
            imported = {name for name in _imported_modules(path) if name.split(".")[0] == "bitrix_sandbox"}
            # A dynamic import (importlib, a settings string) would name it too.
            if imported or "bitrix_sandbox" in path.read_text(encoding="utf-8"):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []
