"""The repository stands on its own and stays readable: what a clone can follow, how big a class may grow."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRODUCTION = ("statussync", "bxsync_project")
# Read as text: these suffixes and extensionless files (Makefile, .ci/run); not images, catalogs, databases.
TEXT_SUFFIXES = {
    ".py",
    ".md",
    ".php",
    ".html",
    ".txt",
    ".toml",
    ".json",
    ".cfg",
    ".ini",
    ".sh",
    ".po",
    ".example",
}
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
        )
    )
)
# The research notes' source tags, `R:` followed by a page path: a path on the documentation site with no
# address is something only the notes could resolve; a tag that carries its URL can be followed.
SOURCE_TAG = re.compile(r"\[(?:R|E|R/E)" + r":\s[^\]]*\]")
CITATION = re.compile(r"docs/(bitrix|contract|decisions|reliability)\.md[\"'`]?,? \"([^\"]+)\"")
MAX_CLASS_LINES = 150


def _repository_text_files() -> list[Path]:
    """The repository's own text files: tracked or new, not what git ignores (.venv, staticfiles, logs)."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=ROOT,
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout.decode()
        paths = [ROOT / name for name in listed.split("\0") if name]
    except (OSError, subprocess.SubprocessError):  # an export without .git: walk, skipping generated folders
        skipped = {"staticfiles", "__pycache__", "node_modules"}
        paths = [
            path
            for path in ROOT.rglob("*")
            if not any(part.startswith(".") or part in skipped for part in path.relative_to(ROOT).parts[:-1])
        ]
    # A file in the middle of a merge is listed once per conflict stage: a set.
    texts = {path for path in paths if path.is_file() and (path.suffix in TEXT_SUFFIXES or not path.suffix)}
    return sorted(texts)


def test_it_refers_to_nothing_outside_the_repository() -> None:
    found = []
    for path in _repository_text_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
        for tag in SOURCE_TAG.finditer(text):
            if "://" not in tag.group(0):
                number = text.count("\n", 0, tag.start()) + 1
                found.append(f"{path.relative_to(ROOT)}:{number}: {' '.join(tag.group(0).split())}")
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
