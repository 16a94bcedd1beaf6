"""One doctor run: every check in turn, the verdict, the report stored for the dashboard, the quirks for the
sync. The JSON shape of the report is documented in docs/bitrix.md "What doctor checks"."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.utils import timezone
from django.utils.translation import get_language, gettext

from statussync.models import DoctorReport, Side

from . import checks, quirks, roundtrip
from .checks import Visit
from .findings import BLOCKING, NOTE, WARNING, Finding, verdict_of
from .mapping import mapping_check

# The report's JSON shape; raised when it changes in a way automation would notice.
REPORT_VERSION = 1
REPORTS_KEPT = 20


@dataclass
class DoctorResult:
    """What a run found, when, and the undocumented behaviours known after it."""

    findings: list[Finding]
    checked_at: datetime
    quirks: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        """'healthy', 'warnings' or 'blocked' (see `findings.verdict_of`)."""
        return verdict_of(self.findings)

    @property
    def blocking(self) -> bool:
        """Whether anything blocks syncing: the command's exit status is 1 then."""
        return any(f.level == BLOCKING for f in self.findings)

    def counts(self) -> dict[str, int]:
        """Findings by level."""
        out: dict[str, int] = {}
        for f in self.findings:
            out[f.level] = out.get(f.level, 0) + 1
        return out

    def summary(self) -> str:
        """One line: the verdict and its count (the command's last line, the demo's first screen)."""
        counts = self.counts()
        if self.verdict == "blocked":
            verdict = gettext("syncing is blocked: %(n)d problem(s) to fix") % {"n": counts[BLOCKING]}
        elif self.verdict == "warnings":
            verdict = gettext("syncing works; %(n)d thing(s) to look at") % {"n": counts[WARNING]}
        else:
            verdict = gettext("healthy: nothing blocks syncing")
        return gettext("Bitrix doctor: %(verdict)s") % {"verdict": verdict}

    def as_json(self) -> dict[str, Any]:
        """The report for automation (`bitrix doctor --json`), in the active language."""
        return {
            "version": REPORT_VERSION,
            "verdict": self.verdict,
            "blocking": self.blocking,
            "checked_at": self.checked_at.isoformat(),
            "language": get_language(),
            "counts": self.counts(),
            "findings": [f.as_json() for f in self.findings],
            "quirks": self.quirks,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DoctorResult:
        """A stored report, to render again in another language."""
        findings = [f for f in (Finding.from_json(d) for d in data.get("findings", [])) if f is not None]
        return cls(findings, datetime.fromisoformat(data["checked_at"]), data.get("quirks") or {})


def doctor_run(
    *,
    round_trip: bool = False,
    deal_id: str = "",
    timeout: float = 30.0,
    base_url: str = "",
    store: bool = True,
) -> DoctorResult:
    """Check both portals (read-only unless `round_trip`), remember what they do, store the report."""
    visit = Visit()
    for side in checks.SIDES:
        checks.webhook_check(visit, side)
    for side in visit.answering():
        checks.rights_check(visit, side)
        checks.plan_check(visit, side)
        checks.clock_check(visit, side)
    checks.clocks_apart_check(visit)
    if Side.CRM in visit.clients:
        checks.deal_field_check(visit)
    mapping_check(visit)
    for side in visit.answering():
        checks.events_check(visit, side, base_url=base_url)
    found: dict[str, dict[str, Any]] = {}
    if Side.CMS in visit.clients:
        found[Side.CMS] = quirks.shop_quirks_probe(visit)
    if Side.CRM in visit.clients:
        found[Side.CRM] = quirks.crm_quirks_probe(visit)
        if round_trip and deal_id:
            found[Side.CRM].update(roundtrip.round_trip_check(visit, deal_id=deal_id, timeout=timeout))
        else:
            visit.add("round_trip", Side.CRM, NOTE, "round_trip_skipped")
            visit.add(
                "quirks",
                Side.CRM,
                NOTE,
                "quirk_unprobed",
                quirk=quirks.MOVE_CHANGES_DATE_MODIFY,
                why="needs_round_trip",
            )
    known = {side: quirks.portal_quirks_store(portal=side, found=values) for side, values in found.items()}
    result = DoctorResult(visit.findings, timezone.now(), known)
    if store:
        doctor_report_store(result=result)
    return result


# The verdicts of a finished report (a background check's row says "checking" or "failed" until then).
VERDICTS = ("healthy", "warnings", "blocked")


def doctor_report_store(*, result: DoctorResult) -> DoctorReport:
    """Keep the report for the dashboard (the last `REPORTS_KEPT`)."""
    row = DoctorReport.objects.create(verdict=result.verdict, report=result.as_json())
    doctor_reports_prune()
    return row


def doctor_reports_prune() -> None:
    """Keep the last `REPORTS_KEPT` reports."""
    old = DoctorReport.objects.order_by("-created_at", "-id").values_list("id", flat=True)[REPORTS_KEPT:]
    DoctorReport.objects.filter(id__in=list(old)).delete()


def doctor_report_latest() -> DoctorResult | None:
    """The newest finished report, or None when doctor never finished one."""
    row = DoctorReport.objects.filter(verdict__in=VERDICTS).order_by("-created_at", "-id").first()
    return DoctorResult.from_json(row.report) if row is not None else None
