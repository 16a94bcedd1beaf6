"""The translation catalogs: compiled and committed, complete, and fed by every string the project marks.

None of these needs system gettext (docs/decisions.md "Translations"): the marked strings are found with an
AST scan of the Python files and a scan of the templates' translate tags, and compared with the `.po`. A
string added without `make messages`, or extracted but left without Russian, fails here.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest
from django.contrib import admin
from django.db import models
from django.utils import translation

from bxsync_project.translations import LOCALE, catalog_mismatches, untranslated
from statussync.reasons import TEXTS as REASONS

REPO = Path(__file__).resolve().parent.parent
RU = LOCALE / "ru" / "LC_MESSAGES" / "django.po"

# What `make messages` extracts (its --ignore list leaves out tests, the sandbox, benchmarks and the rest).
PYTHON_ROOTS = ("bxsync_project", "statussync", "demo")
TEMPLATE_ROOTS = ("templates", "statussync/templates")

_SINGULAR = {"_", "gettext", "gettext_lazy", "gettext_noop", "pgettext", "pgettext_lazy"}
_PLURAL = {"ngettext", "ngettext_lazy", "npgettext", "npgettext_lazy"}
_TRANSLATE_TAG = re.compile(r"""\{%\s*(?:translate|trans)\s+(["'])(.+?)\1(?:\s+context\s+(["'])(.+?)\3)?""")
_BLOCK = re.compile(r"\{%\s*blocktrans(?:late)?\b(.*?)%\}(.*?)\{%\s*endblocktrans(?:late)?\s*%\}", re.S)
_BLOCK_CONTEXT = re.compile(r"""\bcontext\s+(["'])(.+?)\1""")
_BLOCK_VARIABLE = re.compile(r"\{\{\s*(\w+)\s*\}\}")
_PLURAL_TAG = re.compile(r"\{%\s*plural\s*%\}")
# Placeholders a translation must keep: %(name)s / %s for gettext, {name} for str.format (the reasons, the
# CRM comments, format_html).
_PERCENT = re.compile(r"%(?:\((\w+)\))?[-#0 +]*\d*(?:\.\d+)?[sdifr]")
_BRACES = re.compile(r"(?<!\{)\{(\w*)\}(?!\})")


@cache
def catalog() -> dict[tuple[str, str], object]:
    """(context, msgid) → the `.po` entry."""
    import polib

    return {(e.msgctxt or "", e.msgid): e for e in polib.pofile(str(RU)) if not e.obsolete}


def project_files() -> list[Path]:
    files = [p for root in PYTHON_ROOTS for p in sorted((REPO / root).rglob("*.py"))]
    files += [p for root in TEMPLATE_ROOTS for p in sorted((REPO / root).rglob("*.html"))]
    return [p for p in files if "migrations" not in p.parts]


def python_strings(path: Path) -> Iterator[tuple[str, str, str]]:
    """(context, msgid, plural) of each literal a Python file passes to gettext and friends, as
    makemessages (xgettext) would extract them."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
        if name not in _SINGULAR | _PLURAL:
            continue
        args = [
            a.value if isinstance(a, ast.Constant) and isinstance(a.value, str) else None for a in node.args
        ]
        context = ""
        if name.startswith(("pgettext", "npgettext")):
            context, args = args[0] or "", args[1:]
        if not args or args[0] is None:
            continue  # a variable (reasons.py translates its own marked TEXTS through it)
        plural = args[1] if name in _PLURAL and len(args) > 1 and args[1] else ""
        yield context, args[0], plural


def template_strings(path: Path) -> Iterator[tuple[str, str, str]]:
    """(context, msgid, plural) of each translate and blocktranslate tag, as makemessages builds them."""
    text = path.read_text(encoding="utf-8")
    for m in _TRANSLATE_TAG.finditer(text):
        yield m.group(4) or "", m.group(2), ""
    for m in _BLOCK.finditer(text):
        options, body = m.group(1), m.group(2)
        context = _BLOCK_CONTEXT.search(options)
        parts = [_block_msgid(part, trimmed="trimmed" in options.split()) for part in _PLURAL_TAG.split(body)]
        yield context.group(2) if context else "", parts[0], parts[1] if len(parts) > 1 else ""


def _block_msgid(body: str, *, trimmed: bool) -> str:
    if trimmed:  # django.utils.translation.trim_whitespace
        body = re.sub(r"\s*\n\s*", " ", body.strip())
    return _BLOCK_VARIABLE.sub(r"%(\1)s", body.replace("%", "%%"))


def marked_strings(path: Path) -> list[tuple[str, str, str]]:
    return list(python_strings(path) if path.suffix == ".py" else template_strings(path))


def placeholders(text: str) -> set[str]:
    return {
        f"%({m})" if m else m0 for m, m0 in ((m.group(1), m.group(0)) for m in _PERCENT.finditer(text))
    } | {f"{{{m}}}" for m in _BRACES.findall(text)}


def _translations(entry) -> list[str]:
    if entry.msgid_plural:
        return [entry.msgstr_plural[k] for k in sorted(entry.msgstr_plural)]
    return [entry.msgstr]


def test_it_ships_compiled_catalogs_that_say_what_their_po_files_say():
    assert catalog_mismatches() == [], (
        "run `make messages` (or `python -m bxsync_project.translations compile`)"
    )


def test_it_translates_every_string_of_the_catalog_into_russian():
    assert untranslated(RU) == [], "translate these in locale/ru/LC_MESSAGES/django.po, then `make messages`"


@pytest.mark.parametrize("path", project_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_it_has_a_russian_translation_for_every_marked_string(path):
    missing = []
    for context, msgid, plural in marked_strings(path):
        entry = catalog().get((context, msgid))
        if entry is None or (plural and entry.msgid_plural != plural):
            missing.append((msgid, "not in the catalog: run `make messages`"))
        elif "fuzzy" in entry.flags or not all(_translations(entry)):
            missing.append((msgid, "no Russian yet"))

    assert missing == []


def test_it_finds_the_marked_strings_of_python_and_templates():
    # The scans above must see what makemessages sees, or the test above could pass by finding nothing.
    found = {msgid for path in project_files() for _context, msgid, _plural in marked_strings(path)}

    assert "Links needing attention" in found  # {% translate %} in the dashboard template
    assert "As of %(now)s (%(TIME_ZONE)s). Reload the page for fresh figures." in found  # blocktranslate
    assert "Resync %(count)d link?" in found  # ngettext_lazy
    assert "Why: {reason}." in found  # the CRM comments
    assert len(found) > 600


def test_it_extracts_the_reasons_marked_with_their_own_gettext_noop():
    # statussync/reasons.py stays free of Django and defines its own gettext_noop; makemessages finds it by
    # name, so the audit's reasons can be translated.
    assert set(REASONS.values()) - {msgid for _ctx, msgid in catalog()} == set(), "run `make messages`"


@pytest.mark.parametrize("key", sorted(catalog()), ids=lambda key: key[1][:60])
def test_it_keeps_every_placeholder_in_the_translation(key):
    entry = catalog()[key]
    expected = placeholders(entry.msgid) | placeholders(entry.msgid_plural or "")
    for translated in _translations(entry):
        if not translated:
            continue  # reported as untranslated above
        # A plural form may drop the count ("раз" for 1), never a named value.
        assert placeholders(translated) - expected == set()
        assert {p for p in expected if p not in ("%(count)", "%(counter)", "%(n)")} <= placeholders(
            translated
        )


def _model_texts() -> Iterator[tuple[str, str]]:
    """Every name the admin shows of the models it lists: the models' own, their fields', help texts and
    choices."""
    for model in admin.site._registry:
        if model._meta.app_label != "statussync":
            continue
        opts = model._meta
        yield f"{opts.label}", opts.verbose_name
        yield f"{opts.label} (plural)", opts.verbose_name_plural
        for field in opts.get_fields():
            if not isinstance(field, models.Field) or isinstance(field, models.AutoField):
                continue
            where = f"{opts.label}.{field.name}"
            yield where, field.verbose_name
            if field.help_text:
                yield f"{where} help", field.help_text
            for _value, label in field.flatchoices:
                yield f"{where} choice", label
        for _codename, name in opts.permissions:
            yield f"{opts.label} permission", name


def test_it_names_every_admin_model_field_and_choice_in_russian():
    with translation.override("en"):
        english = [(where, str(text)) for where, text in _model_texts()]
    with translation.override("ru"):
        russian = [str(text) for _where, text in _model_texts()]
    # A field without a verbose name shows its attribute name ("entity id"): it must be named, and
    # translated; so must every choice label and help text.
    untranslated = [
        (where, text)
        for (where, text), in_russian in zip(english, russian, strict=True)
        if in_russian == text and text not in ("CRM", "bxsync", "statusmap import")
    ]

    assert untranslated == []
