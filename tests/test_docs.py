"""The docs a clone reads stay true: every relative link leads somewhere, every setting is documented."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# [text](target) and ![alt](target); a target with a scheme (https:, mailto:) is not relative.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)
FENCE = re.compile(r"^```.*?^```", re.DOTALL | re.MULTILINE)
SETTING_READ = re.compile(r"""env(?:\.\w+)?\(\s*["'](BXSYNC_\w+)["']""")
TABLE_VARIABLES = re.compile(r"`(BXSYNC_\w+)`")


def _anchor(heading: str) -> str:
    """Return GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    return {_anchor(line.lstrip("#")) for line in text.splitlines() if line.startswith("#")}


def _broken_links(path: Path, root: Path = ROOT) -> list[str]:
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    broken = []
    for target in LINK.findall(text):
        if SCHEME.match(target):
            continue
        file_part, _, fragment = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path
        if not resolved.exists():
            broken.append(f"{path.relative_to(root)}: {target} (no such file)")
        elif fragment and resolved.suffix == ".md" and fragment not in _anchors(resolved):
            broken.append(f"{path.relative_to(root)}: {target} (no such section)")
    return broken


def test_it_resolves_every_relative_link_in_the_readme_and_the_docs() -> None:
    broken = [problem for path in DOCS for problem in _broken_links(path)]
    assert broken == []


def test_it_finds_a_broken_link(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# Title\n[gone](missing.md) [here](#title) [nowhere](#absent) [web](https://x.org/)\n")
    assert [problem.split(": ", 1)[1] for problem in _broken_links(page, tmp_path)] == [
        "missing.md (no such file)",
        "#absent (no such section)",
    ]


def _documented_variables() -> set[str]:
    """Return the BXSYNC_* variables in the first column of docs/configuration.md's tables."""
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    first_cells = (line.split("|")[1] for line in text.splitlines() if line.startswith("|"))
    return {name for cell in first_cells for name in TABLE_VARIABLES.findall(cell)}


def test_it_documents_every_setting_read_from_the_environment_and_no_other() -> None:
    read = set(SETTING_READ.findall((ROOT / "bxsync_project" / "settings.py").read_text(encoding="utf-8")))
    documented = _documented_variables()
    assert {"undocumented": sorted(read - documented), "not read": sorted(documented - read)} == {
        "undocumented": [],
        "not read": [],
    }
