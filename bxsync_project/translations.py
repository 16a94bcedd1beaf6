"""The translation catalogs, in pure Python: compile `locale/*/LC_MESSAGES/*.po` to `.mo`, and check that the
committed `.mo` files say what their `.po` files say.

The compiled catalogs are committed (docs/decisions.md "Translations"), so a fresh machine needs no gettext
tools to show the admin in Russian. Developers update them with `make messages`: Django's `makemessages`
(which needs Debian's `gettext` for `xgettext`/`msgmerge`) extracts the strings, then this module compiles
them with polib (a dev dependency). The test suite checks the `.mo` files against the `.po` files with
`catalog_mismatches`, so a forgotten compile fails CI.

    python -m bxsync_project.translations compile   # .po → .mo
    python -m bxsync_project.translations check     # exit 1 when a .mo is missing or stale
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

LOCALE = Path(__file__).resolve().parent.parent / "locale"


def gettext_noop(message: str) -> str:
    """Mark `message` for `makemessages` (which finds this name) without translating it."""
    return message


# Django's own strings whose Russian reads wrong around bxsync's names: Django says "По состояние" (a
# preposition before a noun left in the nominative) over each list filter, and "Добавить еще один Правило"
# under the rules. Extracted here so our catalog, which comes first in LOCALE_PATHS, can say them better.
DJANGO_OVERRIDES = (
    gettext_noop(" By %(filter_title)s "),
    gettext_noop("Add another %(verbose_name)s"),
)


def catalogs() -> list[Path]:
    """Every `.po` file under locale/."""
    return sorted(LOCALE.glob("*/LC_MESSAGES/*.po"))


def _entries(catalog: Any) -> dict[tuple[str, str, str], tuple[str, ...]]:
    """What a catalog translates: (context, msgid, plural msgid) → translations, untranslated and fuzzy
    entries left out (gettext ignores them too)."""
    found: dict[tuple[str, str, str], tuple[str, ...]] = {}
    for entry in catalog:
        if entry.obsolete or "fuzzy" in entry.flags or not entry.msgid:
            continue
        if entry.msgid_plural:
            forms = tuple(entry.msgstr_plural[k] for k in sorted(entry.msgstr_plural))
            if not all(forms):
                continue
        elif entry.msgstr:
            forms = (entry.msgstr,)
        else:
            continue
        found[(entry.msgctxt or "", entry.msgid, entry.msgid_plural or "")] = forms
    return found


def catalogs_compile() -> list[Path]:
    """Compile every `.po` to the `.mo` beside it; returns the `.mo` paths."""
    import polib

    written = []
    for po_path in catalogs():
        mo_path = po_path.with_suffix(".mo")
        polib.pofile(str(po_path)).save_as_mofile(str(mo_path))
        written.append(mo_path)
    return written


def catalog_mismatches() -> list[str]:
    """Why a committed `.mo` does not match its `.po` (missing, or an entry differs); empty when they do."""
    import polib

    problems = []
    for po_path in catalogs():
        mo_path = po_path.with_suffix(".mo")
        name = po_path.relative_to(LOCALE.parent)
        if not mo_path.exists():
            problems.append(f"{name}: no compiled .mo beside it")
            continue
        po, mo = _entries(polib.pofile(str(po_path))), _entries(polib.mofile(str(mo_path)))
        for key in sorted(set(po) | set(mo)):
            if po.get(key) != mo.get(key):
                problems.append(f"{name}: {key[1]!r} differs between the .po and the compiled .mo")
    return problems


def untranslated(po_path: Path, *, only: tuple[str, ...] = ()) -> list[str]:
    """The msgids of a `.po` without a translation (or fuzzy); with `only`, just those used in files whose
    path starts with one of these prefixes."""
    import polib

    missing = []
    for entry in polib.pofile(str(po_path)):
        if entry.obsolete or not entry.msgid:
            continue
        if only and not any(path.startswith(only) for path, _line in entry.occurrences):
            continue
        translated = all(entry.msgstr_plural.values()) if entry.msgid_plural else bool(entry.msgstr)
        if not translated or "fuzzy" in entry.flags:
            missing.append(entry.msgid)
    return missing


def main(argv: list[str]) -> int:
    """`compile` or `check`."""
    if argv == ["compile"]:
        for path in catalogs_compile():
            print(f"compiled {path.relative_to(LOCALE.parent)}")
        return 0
    if argv == ["check"]:
        problems = catalog_mismatches()
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1 if problems else 0
    print("usage: python -m bxsync_project.translations compile|check", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
