"""`manage.py statusmap import FILE|-`, `statusmap export`, `statusmap check` [docs/contract.md]."""

from __future__ import annotations

import getpass
import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import gettext

from statussync.mapping.store import mapping_check, mapping_describe, mapping_export, mapping_import
from statussync.mapping.validate import MappingError, mapping_decode
from statussync.models import MappingChangeSource


class Command(BaseCommand):
    help = "Import, export or check the order status ↔ deal stage mapping (docs/mapping.example.json)."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="{import,export,check}")
        load = actions.add_parser(
            "import", help="Replace the whole mapping with a JSON file, atomically; nothing changes on error."
        )
        load.add_argument("file", help="The mapping file, or - to read standard input.")
        actions.add_parser("export", help="Print the mapping as JSON (the same format import reads).")
        actions.add_parser("check", help="Report problems with the stored mapping; exit 1 if there are any.")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "import":
            self._import(options["file"])
        elif action == "export":
            self.stdout.write(json.dumps(mapping_export(), indent=2, ensure_ascii=False))
        else:
            self._check()

    def _import(self, path: str) -> None:
        text, name = self._read(path)
        try:
            data = mapping_decode(text=text)
        except MappingError as exc:
            raise CommandError(
                gettext("%(file)s: %(problem)s; mapping not imported, nothing changed")
                % {"file": name, "problem": exc.problems[0]}
            ) from None
        try:
            summary = mapping_import(data=data, source=MappingChangeSource.COMMAND, username=_os_user())
        except MappingError as exc:
            for problem in exc.problems:
                self.stderr.write(f"{name}: {problem}")
            raise CommandError(
                gettext("mapping not imported: %(count)d problem(s); nothing changed")
                % {"count": len(exc.problems)}
            ) from None
        self.stdout.write(summary.describe())
        # Accepted but probably not what the manager meant; check would say the same.
        for warning in summary.warnings:
            self.stderr.write(f"{warning.level}: {warning}")

    def _read(self, path: str) -> tuple[str, str]:
        if path == "-":
            # Looked up at call time, not import time, so tests can substitute stdin.
            return sys.stdin.read(), "<stdin>"
        try:
            # utf-8-sig: editors on Windows save JSON with a byte-order mark.
            with open(path, encoding="utf-8-sig") as f:
                return f.read(), path
        except OSError as exc:
            raise CommandError(
                gettext("cannot read mapping file %(file)s: %(error)s")
                % {"file": path, "error": exc.strerror or exc}
            ) from None
        except UnicodeDecodeError as exc:
            raise CommandError(
                gettext("mapping file %(file)s is not UTF-8 text (byte %(byte)s)")
                % {"file": path, "byte": exc.start}
            ) from None

    def _check(self) -> None:
        found = mapping_check()
        for problem in found:
            self.stderr.write(f"{problem.level}: {problem}")
        problems = [p for p in found if p.level != "note"]
        if problems:
            raise CommandError(gettext("mapping check found %(count)d problem(s)") % {"count": len(problems)})
        self.stdout.write(gettext("mapping OK: %(mapping)s") % {"mapping": mapping_describe()})


def _os_user() -> str:
    """Who ran the import, for the mapping's history (the admin shows it)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        return ""
