"""The repository stands on its own and stays readable: what a clone can follow, how big a class may grow."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRODUCTION = ("statussync", "bxsync_project")
# Read as text; screenshots, compiled catalogs and databases are not.
TEXT_SUFFIXES = {".py", ".md", ".php", ".html", ".txt", ".toml", ".json", ".cfg", ".ini", ".sh", ".po"}
TEXT_NAMES = {"Makefile", "Procfile", ".env.example", "run"}
# A clone has none of these: the design notes and research the project started from lived beside the
# repository, not in it. The strings are split so this file does not match itself.
OUTSIDE = re.compile(
    "|".join(
        (
            r"\.\./" + "shared",
            "/work/" + "shared",
            "DESIGN" + r"\.md",
            "bitrix-api" + r"\.md",
            "django-stack" + r"\.md",
            "STYLE" + r"\.md",
            # The research notes' source tags; docs/bitrix.md links the pages themselves.
            r"\[(?:R|E|R/E)" + r":\s",
        )
    )
)
CITATION = re.compile(r"docs/(bitrix|contract|decisions|reliability)\.md[\"'`]?,? \"([^\"]+)\"")
MAX_CLASS_LINES = 150


def _repository_text_files() -> list[Path]:
    files = []
    for path in sorted(ROOT.rglob("*")):
        parts = path.relative_to(ROOT).parts
        # .venv, .git, caches and whatever a run leaves behind in dot-folders are not the repository's text;
        # .ci is.
        if any(part.startswith(".") and part != ".ci" for part in parts[:-1]) or "__pycache__" in parts:
            continue
        if path.is_file() and (path.suffix in TEXT_SUFFIXES or path.name in TEXT_NAMES):
            files.append(path)
    return files


def test_it_refers_to_nothing_outside_the_repository() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in _repository_text_files()
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
        if OUTSIDE.search(line)
    ]
    assert found == []


def _headings(doc: str) -> list[str]:
    text = (ROOT / "docs" / f"{doc}.md").read_text(encoding="utf-8")
    return [line.lstrip("#").strip() for line in text.splitlines() if line.startswith("#")]


def test_it_cites_only_sections_the_docs_have() -> None:
    headings = {doc: _headings(doc) for doc in ("bitrix", "contract", "decisions", "reliability")}
    dangling = []
    for path in _repository_text_files():
        for match in CITATION.finditer(path.read_text(encoding="utf-8", errors="replace")):
            doc, section = match.group(1), " ".join(match.group(2).split())
            # A heading may say more than the citation: "The shop" cites "The shop (module `sale`)".
            if not any(heading == section or heading.startswith(f"{section} (") for heading in headings[doc]):
                dangling.append(f"{path.relative_to(ROOT)}: docs/{doc}.md {section!r}")
    assert dangling == []


def test_it_keeps_every_production_class_short() -> None:
    long_classes = []
    for package in PRODUCTION:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > MAX_CLASS_LINES:
                    lines = node.end_lineno - node.lineno + 1
                    long_classes.append(f"{path.relative_to(ROOT)}: {node.name} ({lines} lines)")
    assert long_classes == []
