"""The demo's first minute: a quiet console with one live summary line, in plain words."""

from __future__ import annotations

import io

import pytest
from django.utils import translation

from demo.summary import DemoCounts, LivePrinter, demo_counts, reconcile_line, summary_line
from statussync.models import AuditEntry, InboundEvent, Link, Outcome


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_it_summarises_in_one_line():
    line = summary_line(DemoCounts(events=120, writes=34, payments=5, conflicts=2, attention=1))

    assert line == "Events 120 · writes 34 · payments 5 · conflicts 2 · needing attention 1"


def test_it_says_what_the_first_reconciliation_did_without_python_reprs():
    # What ReconcileReport.counts() returns: outcome keys are TextChoices members.
    counts = {"orders": 43, "deals": 43, "queued": 0, "no_change": 40, Outcome.UNLINKED: 6}

    line = reconcile_line(counts, linked=40)

    assert line == "Read 43 orders and 43 deals; 40 pairs are linked (no partner found: 6)."
    assert "Outcome." not in line
    assert "{" not in line


def test_it_speaks_the_demos_language(settings):
    # `make demo` sets LANGUAGE_CODE=ru; the console has no request to take a language from, so it speaks
    # LANGUAGE_CODE (what gettext falls back to with no language activated).
    settings.LANGUAGE_CODE = "ru"
    counts = {"orders": 43, "deals": 43, "no_change": 40, Outcome.UNLINKED: 6}

    translation.deactivate()
    live = summary_line(DemoCounts(events=120, writes=34, payments=5, conflicts=2, attention=1))
    first = reconcile_line(counts, linked=40)

    assert live == "События 120 · записи 34 · оплаты 5 · конфликты 2 · требуют внимания 1"
    assert first == "Прочитано заказов: 43, сделок: 43; связано пар: 40 (пара не найдена: 6)."


def test_it_redraws_the_line_in_place_on_a_terminal():
    terminal, clock = Terminal(), Clock()
    counts = iter([DemoCounts(events=1), DemoCounts(events=2)])
    live = LivePrinter(read=lambda: next(counts), stream=terminal, clock=clock)

    live.tick()
    live.tick()  # too soon: nothing read
    clock.now = 2.5
    live.tick()
    live.close()

    assert terminal.getvalue() == (
        "\r\033[KEvents 1 · writes 0 · payments 0 · conflicts 0 · needing attention 0"
        "\r\033[KEvents 2 · writes 0 · payments 0 · conflicts 0 · needing attention 0\n"
    )


def test_it_prints_plain_lines_now_and_then_when_not_on_a_terminal():
    pipe, clock = io.StringIO(), Clock()
    events = iter(range(100))
    live = LivePrinter(read=lambda: DemoCounts(events=next(events)), stream=pipe, clock=clock)

    for second in range(0, 40, 2):
        clock.now = second
        live.tick()
    live.close()

    lines = pipe.getvalue().splitlines()
    assert len(lines) == 3  # at 0, 16 and 32 seconds
    assert "\r" not in pipe.getvalue()
    assert "\033" not in pipe.getvalue()


def test_it_skips_a_refresh_when_the_database_is_busy():
    terminal = Terminal()

    def locked() -> DemoCounts:
        raise RuntimeError("database is locked")

    live = LivePrinter(read=locked, stream=terminal)
    live.tick()

    assert terminal.getvalue() == ""


@pytest.mark.django_db
def test_it_counts_events_writes_payments_conflicts_and_attention():
    InboundEvent.objects.create(side="cms", event="ONSALEORDERSAVED", entity_id="1", dedupe_key="a")
    for outcome in ["applied", "payment_applied", "conflict_resolved", "conflict_flagged", "echo"]:
        AuditEntry.objects.create(outcome=outcome)
    Link.objects.create(order_id="1", deal_id="2", needs_attention=True)

    assert demo_counts() == DemoCounts(events=1, writes=3, payments=1, conflicts=2, attention=1)
