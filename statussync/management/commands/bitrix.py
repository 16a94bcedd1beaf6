"""`manage.py bitrix doctor [--json] [--round-trip --deal ID]` [docs/contract.md]: check the configured
portals and explain each problem with its fix; exit status 1 when anything blocks syncing."""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils.translation import gettext

from statussync.doctor import doctor_run
from statussync.doctor.findings import BLOCKING, NOTE, OK, WARNING

MARKS = {OK: "ok", NOTE: "--", WARNING: "!!", BLOCKING: "XX"}


class Command(BaseCommand):
    help = 'Check the Bitrix portals bxsync is configured for (docs/bitrix.md "What doctor checks").'

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="{doctor}")
        doctor = actions.add_parser(
            "doctor",
            help="Check the webhooks, rights, deal field, mapping, events and clocks; change nothing.",
        )
        doctor.add_argument("--json", action="store_true", help="print the report as JSON (docs/bitrix.md)")
        doctor.add_argument(
            "--round-trip",
            action="store_true",
            help="also change a test deal's comment, wait for its event to reach bxsync, and undo it",
        )
        doctor.add_argument("--deal", default="", help="the test deal's id (with --round-trip)")
        doctor.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the test event")
        doctor.add_argument("--base-url", default="", help="bxsync's public address, to name handler URLs")

    def handle(self, *args: Any, **options: Any) -> None:
        result = doctor_run(
            round_trip=options["round_trip"],
            deal_id=str(options["deal"]),
            timeout=options["timeout"],
            base_url=options["base_url"],
        )
        if options["json"]:
            self.stdout.write(json.dumps(result.as_json(), indent=2, ensure_ascii=False))
        else:
            for finding in result.findings:
                where = {"cms": gettext("shop"), "crm": "CRM"}.get(finding.portal, "")
                prefix = f"[{MARKS[finding.level]}] {where + ': ' if where else ''}"
                self.stdout.write(prefix + finding.message)
                if finding.fix:
                    self.stdout.write("       " + gettext("fix: %(fix)s") % {"fix": finding.fix})
            self.stdout.write(result.summary())
        if result.blocking:
            sys.exit(1)
