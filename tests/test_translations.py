"""The translation catalogs: compiled and committed, complete for the strings they cover, and fed by every
string the code marks. None of these needs system gettext (docs/decisions.md "Translations")."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from bxsync_project.translations import LOCALE, catalog_mismatches, untranslated
from statussync.reasons import TEXTS as REASONS

REPO = Path(__file__).resolve().parent.parent
RU = LOCALE / "ru" / "LC_MESSAGES" / "django.po"

# TODO(final translation pass): every file of the project (drop `only=` below and test every file). Until
# then, the files whose strings are translated already; the rest (reasons.py, the links, timeline, audit and
# dashboard pages) are extracted into the catalog but not yet translated.
TRANSLATED = (
    "bxsync_project/",
    "statussync/catalog.py",
    "statussync/mapping.py",
    "statussync/impact.py",
    "statussync/roles.py",
    "statussync/apps.py",
    "statussync/admin/mapping.py",
    "statussync/admin/mapping_changes.py",
    "statussync/admin/mapping_file.py",
    "statussync/admin/mapping_preview.py",
    "statussync/admin/catalog.py",
    "templates/admin/base_site.html",
    "templates/admin/statussync/pipeline/",
    "templates/admin/statussync/catalog_change_list.html",
    "templates/admin/statussync/refresh_names_button.html",
)
_MARKERS = {
    "_",
    "gettext",
    "gettext_lazy",
    "gettext_noop",
    "ngettext",
    "ngettext_lazy",
    "pgettext",
    "pgettext_lazy",
}
_TEMPLATE_TAG = re.compile(r"""\{%\s*(?:translate|trans)\s+(["'])(.+?)\1""")


def msgids() -> set[str]:
    import polib

    return {entry.msgid for entry in polib.pofile(str(RU))}


def marked_strings(path: Path) -> set[str]:
    """The literal strings a Python file passes to gettext and friends (what makemessages would extract)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
        first = node.args[1] if name.startswith("pgettext") and len(node.args) > 1 else node.args[0]
        if name in _MARKERS and isinstance(first, ast.Constant) and isinstance(first.value, str):
            found.add(first.value)
    return found


def translated_files() -> list[Path]:
    files = []
    for prefix in TRANSLATED:
        path = REPO / prefix
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix in (".py", ".html"))
        else:
            files.append(path)
    return files


def test_it_ships_compiled_catalogs_that_say_what_their_po_files_say():
    assert catalog_mismatches() == [], (
        "run `make messages` (or `python -m bxsync_project.translations compile`)"
    )


def test_it_translates_every_string_of_the_translated_files_into_russian():
    assert untranslated(RU, only=TRANSLATED) == []


@pytest.mark.parametrize("path", translated_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_it_has_every_marked_string_in_the_catalog(path):
    if path.suffix == ".py":
        marked = marked_strings(path)
    else:  # {% translate "…" %}; blocktranslate bodies are left to makemessages
        marked = {m.group(2) for m in _TEMPLATE_TAG.finditer(path.read_text(encoding="utf-8"))}

    assert marked - msgids() == set(), "run `make messages`"


def test_it_extracts_the_reasons_marked_with_their_own_gettext_noop():
    # statussync/reasons.py stays free of Django and defines its own gettext_noop; makemessages finds it by
    # name, so the audit's reasons can be translated.
    assert set(REASONS.values()) - msgids() == set(), "run `make messages`"
