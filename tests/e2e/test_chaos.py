"""Chaos, end to end: exactly one write per change and nothing left inconsistent, whatever breaks.

Each test breaks things on purpose against the real stack (sandbox portals, webhooks over HTTP, granian, real
qcluster workers, REST) on both configurations, then counts: the writes the portals received must equal the
human changes that needed one, and every pair must agree under the mapping (a paid order's deal at or past
the paid stage). Each change is made on a pair of its own, so "the changes that needed a write" is exact.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from tests.e2e.stack import MAPPING, Stack, running_stack
from tests.support.legs import leg
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

MANAGER = 8  # a CRM user id: a person, not the webhook user


def _as_datetime(value: object) -> datetime:
    """A timestamp as the database returned it (SQLite: text; PostgreSQL: datetime)."""
    if isinstance(value, datetime):
        return value
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True)
class PipelineRules:
    to_crm: dict[str, str]
    to_cms: dict[str, str]
    paid_stage: str


def _rules() -> dict[int, PipelineRules]:
    document = json.loads(MAPPING.read_text())
    rules = {}
    for pipeline in document["pipelines"]:
        to_crm = {r["order_status"]: r["deal_stage"] for r in pipeline["rules"] if r["direction"] != "to_cms"}
        to_cms = {r["deal_stage"]: r["order_status"] for r in pipeline["rules"] if r["direction"] != "to_crm"}
        rules[pipeline["pipeline"]] = PipelineRules(to_crm, to_cms, pipeline["paid_stage"])
    return rules


RULES = _rules()


def change_one(stack: Stack, order_id: int, deal_id: int, rng: random.Random) -> str:
    """One human change on one side of a pair at its first state (N / first stage), chosen so that it needs
    exactly one write on the other side: a status set in the shop, a deal moved by a manager, or a payment."""
    rules = RULES[int(stack.sandbox.crm.get_deal(deal_id)["CATEGORY_ID"])]
    kind = rng.choice(["shop", "shop", "crm", "crm", "payment"])
    if kind == "shop":
        stack.sandbox.shop.set_order_status(order_id, rng.choice([s for s in rules.to_crm if s != "N"]))
    elif kind == "crm":
        stages = [g for g, s in rules.to_cms.items() if s != "N"]
        stack.sandbox.crm.move_deal(deal_id, rng.choice(sorted(stages)), user_id=MANAGER)
    else:
        stack.sandbox.shop.pay_order(order_id)  # the shop also sets status P (status_on_paid)
    return kind


def disagreements(stack: Stack, pairs: list[tuple[int, int]]) -> list[str]:
    """The pairs whose order and deal do not agree under the mapping, described."""
    found = []
    for order_id, deal_id in pairs:
        order, deal = stack.sandbox.shop.get_order(order_id), stack.sandbox.crm.get_deal(deal_id)
        rules = RULES[int(deal["CATEGORY_ID"])]
        status, stage = order["statusId"], deal["STAGE_ID"]
        if order["payed"] == "Y":
            agree = stage == rules.paid_stage
        else:
            agree = rules.to_crm.get(status) == stage or rules.to_cms.get(stage) == status
        if not agree:
            found.append(f"order {order_id} {status} (paid {order['payed']}) / deal {deal_id} {stage}")
    return found


def last_id(stack: Stack, table: str) -> int:
    """The newest row's id: the stack lives for the session, so a test counts only what came after it."""
    return stack.query(f"SELECT coalesce(max(id), 0) FROM statussync_{table}")[0][0]  # noqa: S608 - ours


def dead_letters(stack: Stack, *, after: int) -> int:
    return stack.query("SELECT count(*) FROM statussync_job WHERE state = 'dead' AND id > ?", after)[0][0]


def flagged(stack: Stack, pairs: list[tuple[int, int]]) -> list[str]:
    orders = {str(o) for o, _ in pairs}
    rows = stack.query("SELECT order_id FROM statussync_link WHERE state = 'active' AND needs_attention")
    return sorted(o for (o,) in rows if o in orders)


def new_pairs(stack: Stack, n: int, *, pipeline_share: float = 0.0) -> list[tuple[int, int]]:
    """`n` order/deal pairs bxsync has never seen (seeded silently); later changes come seconds after."""
    pairs = stack.sandbox.seed(n, pipeline_share=pipeline_share, orders_without_deal=0, deals_without_order=0)
    stack.sandbox.advance_clock(5)
    return pairs


# Each change is made on a pair of its own, so every pair is one independent trial of "a change, its echo,
# each dropped (20%), duplicated (10%) or delivered, in any order". 400 pairs see every such combination of
# the five kinds of change (the rarest, a payment with both events dropped, about 0.2 x 0.2 x 0.2 = 0.8%:
# three times expected) and eight pages of reconciliation; 1,000 proved the same at 2.5 times the cost, and
# made every later reconcile of the session's stack read more.
CHAOS_PAIRS = 400


def test_it_converges_with_one_write_per_change_when_events_are_dropped_duplicated_and_reordered(e2e: Stack):
    """400 random changes on both sides of 400 pairs never seen before: 20% of the events dropped, 10%
    duplicated, the rest reordered; then one reconcile."""
    pairs = new_pairs(e2e, CHAOS_PAIRS, pipeline_share=0.2)
    jobs_before = last_id(e2e, "job")
    e2e.sandbox.reset_counters()
    e2e.sandbox.set_faults("both", drop_rate=0.2, duplicate_rate=0.1, reorder_window=0.5)
    rng = random.Random(8)

    for order_id, deal_id in pairs:
        change_one(e2e, order_id, deal_id, rng)
    e2e.wait_idle(timeout=180)
    dropped = sum(sum(c["events"].get("dropped", {}).values()) for c in e2e.sandbox.counters().values())
    e2e.sandbox.clear_faults()
    e2e.manage("reconcile")
    e2e.wait_idle(timeout=120)

    assert dropped > len(pairs) // 10  # the faults did bite
    assert disagreements(e2e, pairs) == []
    assert e2e.sandbox.rest_writes() == len(pairs)
    assert dead_letters(e2e, after=jobs_before) == 0


# After a restart, every change and payment is written within this many seconds, counted from the moment the
# service is started again: the lease of the dead workers' claims (20 s in these stacks) and a run.
RESUMED_WITHIN_SECONDS = 30


def test_it_recovers_from_every_process_killed_mid_run_and_events_lost_while_down(e2e: Stack):
    """No manual step: the restart takes the dead workers' jobs and orders back once their lease runs out
    (no heartbeat renews them), and reconciles by itself to find the changes whose events found nobody."""
    pairs = e2e.seed_linked(60)
    jobs_before = last_id(e2e, "job")
    e2e.sandbox.reset_counters()
    rng = random.Random(9)
    first, while_down = pairs[:40], pairs[40:]
    e2e.sandbox.pause_events("both")  # a bulk edit: its events arrive together, and a run claims them all
    kinds = [change_one(e2e, order_id, deal_id, rng) for order_id, deal_id in first]
    e2e.sandbox.resume_events("both")
    running = "SELECT count(*) FROM statussync_job WHERE state = 'running'"
    wait_for(
        lambda: e2e.query(running)[0][0] >= 10, timeout=30, interval=0.02, what="the workers to be mid-run"
    )

    e2e.kill()  # SIGKILL: web server, workers, all at once, mid-run
    killed, held = time.monotonic(), e2e.query(running)[0][0]
    for order_id, deal_id in while_down:
        # Their events find nobody and are lost (Bitrix never re-sends).
        kinds.append(change_one(e2e, order_id, deal_id, rng))
    assert e2e.sandbox.wait_events_idle(timeout=30)
    refused = sum(sum(c["events"].get("failed", {}).values()) for c in e2e.sandbox.counters().values())
    restarted = time.monotonic()
    e2e.serve()

    wait_for(
        lambda: e2e.sandbox.rest_writes() >= len(pairs) and not disagreements(e2e, pairs),
        timeout=RESUMED_WITHIN_SECONDS + 30,
        interval=0.2,
        what="every change and payment to be written after the restart",
    )
    resumed = time.monotonic() - restarted
    e2e.wait_idle(timeout=90)

    down = restarted - killed
    print(
        f"{held} jobs held by the killed workers, down {down:.1f} s; "
        f"all written {resumed:.1f} s after the restart"
    )
    assert "payment" in kinds
    assert refused >= len(while_down)
    assert resumed <= RESUMED_WITHIN_SECONDS, f"{resumed:.1f} s"
    assert disagreements(e2e, pairs) == []
    assert e2e.sandbox.rest_writes() == len(pairs)
    assert dead_letters(e2e, after=jobs_before) == 0
    e2e.forgive_refused_events()  # the ones refused while bxsync was down, on purpose


def test_it_writes_once_when_every_writes_reply_is_lost_once(e2e: Stack):
    """Each write is applied, then its reply is lost (a timeout on one leg, a 500 after commit on the other):
    the retry finds the write landed and adopts it, instead of writing again — payments included, with the
    demo's mapping where the paid stage maps back to an awaiting-payment status (a second look would see a
    regression)."""
    reply_lost_as = "timeout" if e2e.kind == "embedded" else "error"
    pairs = e2e.seed_linked(20)
    jobs_before = last_id(e2e, "job")
    e2e.sandbox.reset_counters()
    e2e.sandbox.set_faults("both", reply_lost_once=True, reply_lost_as=reply_lost_as, timeout_seconds=5)
    rng = random.Random(4)

    kinds = [change_one(e2e, order_id, deal_id, rng) for order_id, deal_id in pairs[:-4]]
    for order_id, _ in pairs[-4:]:
        e2e.sandbox.shop.pay_order(order_id)
    e2e.wait_idle(timeout=120)

    lost = sum(sum(c.get("replies_lost", {}).values()) for c in e2e.sandbox.counters().values())
    assert lost >= len(pairs) // 2  # many writes lost their reply (a run's batch carries several)
    assert disagreements(e2e, pairs) == []
    assert e2e.sandbox.rest_writes() == len(pairs), kinds
    assert flagged(e2e, pairs) == []
    assert dead_letters(e2e, after=jobs_before) == 0


@pytest.fixture(scope="module")
def slow_stack(tmp_path_factory) -> Iterator[Stack]:
    """A stack with a lease of 3 s, for runs made to outlive it: the first heartbeat comes after 5 s, too late
    to keep it (bxsync warns of such a lease: W001)."""
    with running_stack(
        leg(),
        tmp_path_factory.mktemp(f"e2e-slow-{leg()}"),
        BXSYNC_JOB_LEASE_SECONDS="3",
        BXSYNC_REST_TIMEOUT="10",
    ) as stack:
        yield stack


def test_it_sends_nothing_from_a_run_that_outlived_its_lease_while_a_second_worker_took_over(
    slow_stack: Stack,
):
    stack = slow_stack
    [(order_id, deal_id), (other_order, other_deal)] = stack.seed_linked(2)
    stack.sandbox.reset_counters()
    stack.sandbox.set_faults("both", latency=5)  # every call takes 5 s: run A's first read outlives its lease

    stack.sandbox.shop.set_order_status(order_id, "P")

    def lease_expired_mid_run() -> bool:
        sql = "SELECT lease_until FROM statussync_job WHERE state = 'running' AND kind = 'order'"
        sql += " AND entity_id = ?"
        rows = stack.query(sql, str(order_id))
        return bool(rows) and rows[0][0] is not None and datetime.now(UTC) > _as_datetime(rows[0][0])

    wait_for(lease_expired_mid_run, timeout=30, what="run A to outlive its lease")
    stack.sandbox.clear_faults()  # A's call in flight still takes its 5 s; the next worker's calls are quick
    stack.sandbox.shop.set_order_status(other_order, "F")  # wakes a second worker: it takes A's order over
    stack.wait_idle(timeout=120)

    assert stack.sandbox.crm.get_deal(deal_id)["STAGE_ID"] == "PREPARATION"
    assert stack.sandbox.crm.get_deal(other_deal)["STAGE_ID"] == "WON"
    assert stack.sandbox.rest_writes() == 2
    jobs = stack.query(
        "SELECT state FROM statussync_job WHERE kind = 'order' AND entity_id = ?", str(order_id)
    )
    assert {state for (state,) in jobs} == {"done"}  # taken over (or given back by A), and finished


@pytest.mark.parametrize(
    "arrival", ["shop-first", "crm-first", "shuffled", "payment-event-lost"], ids=lambda a: a
)
def test_it_gets_a_payment_to_the_crm_for_pairs_never_seen_before_whatever_arrives_first(e2e: Stack, arrival):
    pairs = new_pairs(e2e, 6)
    e2e.sandbox.reset_counters()
    if arrival == "shuffled":
        e2e.sandbox.set_faults("both", reorder_window=1.0)
    e2e.sandbox.pause_events("both")
    for order_id, deal_id in pairs:
        e2e.sandbox.shop.pay_order(order_id)  # ONPAYMENTENTITYSAVED, then ONSALEORDERSAVED (status P)
        e2e.sandbox.crm.edit_deal(deal_id, {"TITLE": f"Заказ {order_id} (оплачен)"}, user_id=MANAGER)
    if arrival == "payment-event-lost":
        e2e.sandbox.set_faults("shop", drop_rate=1.0)
    first, second = ("crm", "shop") if arrival == "crm-first" else ("shop", "crm")
    e2e.sandbox.resume_events(first)
    assert e2e.sandbox.portal(first).wait_events_idle(30)
    e2e.sandbox.resume_events(second)
    e2e.wait_idle(timeout=60)
    if arrival == "payment-event-lost":
        e2e.sandbox.clear_faults()
        e2e.manage("reconcile")
        e2e.wait_idle(timeout=60)

    assert [e2e.sandbox.crm.get_deal(d)["STAGE_ID"] for _, d in pairs] == ["PREPAYMENT_INVOICE"] * len(pairs)
    assert e2e.sandbox.rest_writes() == len(pairs)


def test_it_gets_a_payment_to_a_deal_created_after_its_order_was_paid(e2e: Stack):
    e2e.sandbox.reset_counters()
    order_id = e2e.sandbox.shop.create_order(price=990)["id"]
    e2e.sandbox.shop.pay_order(order_id)
    e2e.wait_idle()
    assert e2e.sandbox.rest_writes() == 0  # nothing to move yet: no deal names the order

    deal_id = e2e.sandbox.crm.create_deal(title="Поздняя сделка", order_id=order_id, user_id=MANAGER)["ID"]
    wait_for(
        lambda: e2e.sandbox.crm.get_deal(deal_id)["STAGE_ID"] == "PREPAYMENT_INVOICE",
        what="the late deal to reach the paid stage",
    )
    e2e.wait_idle()
    assert e2e.sandbox.rest_writes() == 1


# Jobs that failed on a down portal wait for it, not for their own backoff, and flow within 5 s of its return
# (issue 14: 53-58 s after a 40 s outage, each job on its backoff). The backoff here is a flat minute (half of
# it at least, with jitter), as in tests/sync/test_outage.py: a job left to it would retry no sooner than 30 s
# after failing, 15 s past the return, so the 5 s bound fails without the wait for the portal, whatever the
# jitter. The outage lasts until the test has made its changes and seen health red, then ends on the test's
# word: on a loaded machine those steps can take longer than any fixed outage (a 15 s one ended before health
# was read once), and the bound is measured from the outage's end, whenever that is.
OUTAGE_AT_MOST_SECONDS = 300
FLOWING_WITHIN_SECONDS = 5.0
BACKOFF_SECONDS = "60"


@contextmanager
def served_with(stack: Stack, **env: str) -> Iterator[Stack]:
    """The stack restarted with `env` for one test; the next test's `e2e` restarts it as it was (the last
    test of the module needs no restart back: the outage test comes last for that)."""
    stack.stop()
    stack.env.update(env)
    stack.serve()
    yield stack


def test_it_waits_out_a_portal_outage_and_the_backlog_flows_within_5_s_of_the_portals_return(e2e: Stack):
    pairs = e2e.seed_linked(45, pipeline_share=0.2)
    jobs_before, audit_before = last_id(e2e, "job"), last_id(e2e, "auditentry")
    rng = random.Random(60)
    before, during, after = pairs[:15], pairs[15:30], pairs[30:]
    with served_with(
        e2e, BXSYNC_RETRY_BASE_SECONDS=BACKOFF_SECONDS, BXSYNC_RETRY_MAX_SECONDS=BACKOFF_SECONDS
    ):
        e2e.sandbox.reset_counters()
        for order_id, deal_id in before:
            change_one(e2e, order_id, deal_id, rng)
        wait_for(lambda: e2e.sandbox.rest_writes() == len(before), timeout=60, what="the first changes")

        e2e.sandbox.set_faults("crm", outage_seconds=OUTAGE_AT_MOST_SECONDS)  # every CRM call answers 503
        for order_id, deal_id in during:
            change_one(e2e, order_id, deal_id, rng)
        sql = "SELECT count(*) FROM statussync_auditentry WHERE outcome = 'retried' AND id > ?"
        wait_for(lambda: e2e.query(sql, audit_before)[0][0], timeout=30, what="bxsync to meet the outage")
        # A run records its items, then the portals' health: on a loaded machine health is read between.
        wait_for(lambda: e2e.health()["portals"]["crm"]["ok"] is False, timeout=30, what="health to go red")
        health = e2e.health()
        assert health["portals"]["crm"]["failing_since"]
        e2e.sandbox.set_faults("crm", outage_seconds=0)  # the CRM is back
        back = time.monotonic()
        # Nothing can be written while the CRM cannot be read: the first write after it is the backlog's.
        wait_for(
            lambda: e2e.sandbox.rest_writes() > len(before),
            timeout=90,
            interval=0.1,
            what="the backlog to flow",
        )
        flowing_after = time.monotonic() - back
        for order_id, deal_id in after:
            change_one(e2e, order_id, deal_id, rng)
        e2e.wait_idle(timeout=90)
        crm = e2e.health()["portals"]["crm"]

        assert 0 <= flowing_after <= FLOWING_WITHIN_SECONDS, flowing_after
        assert crm["ok"] is True
        assert crm["last_outage_since"] == health["portals"]["crm"]["failing_since"]  # one outage, not flaps
        assert crm["recovered_at"] > crm["last_outage_since"]
        assert disagreements(e2e, pairs) == []
        assert e2e.sandbox.rest_writes() == len(pairs)  # no write lost, none sent twice; no reconcile needed
        assert dead_letters(e2e, after=jobs_before) == 0
