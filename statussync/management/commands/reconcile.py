"""`manage.py reconcile [--dry-run] [--all]`: compare both portals with the links now and fix drift."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from statussync.bitrix import BitrixError
from statussync.reconcile import links_reconcile, reconcile_run


class Command(BaseCommand):
    help = (
        "List what changed on both portals since the last pass and sync it (--all: compare every link). "
        "--dry-run changes nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="print what would change; change nothing")
        parser.add_argument(
            "--all",
            action="store_true",
            help="compare every active link with both portals, not only what changed since the last pass",
        )

    def handle(self, *args, dry_run: bool = False, all: bool = False, **options):
        try:
            if all:
                report = links_reconcile(dry_run=dry_run, progress=self.stderr.write)
            else:
                report = reconcile_run(dry_run=dry_run, process_inline=True, progress=self.stderr.write)
        except BitrixError as exc:
            raise CommandError(f"reconcile stopped: {exc}; run it again to resume where it stopped") from exc
        verb = "would" if dry_run else "did"
        for result in report.results:
            if result.outcome in ("no_change", "echo", "ignored") and not dry_run:
                continue
            self.stdout.write(f"{result.item.describe()}: {result.outcome} — {result.message}")
        counts = report.counts()
        summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        scope = (
            "every link"
            if all
            else ", ".join(f"{s} since {t:%Y-%m-%d %H:%M:%S}" for s, t in report.since.items())
        )
        self.stdout.write(f"reconcile ({'dry run, ' if dry_run else ''}{scope}): {summary}")
        writes = sum(1 for r in report.results if r.item.decision and r.item.decision.write)
        self.stdout.write(f"{verb} write {writes} change(s)")
