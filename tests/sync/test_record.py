"""How a run records its items: a chunk of items a transaction (statussync/sync/record.py), each item alone
when its chunk fails, nothing from a run that lost an order's lock, each order's lock given back once its
item is recorded."""

from __future__ import annotations

from django.db import DatabaseError

from statussync.jobs import job_request, jobs_claim
from statussync.models import AuditEntry, Job, JobKind, JobState, Link, Queue, SyncLock
from statussync.sync import jobs_handle, record, write
from tests.support.sandbox import linked_pair, run_worker


def orders_moved(sb, n: int) -> list[tuple[str, str]]:
    """`n` linked pairs whose orders moved to P, a job each, for one run."""
    pairs = [linked_pair(sb) for _ in range(n)]
    for order_id, _deal_id in pairs:
        sb.shop.set_order_status(int(order_id), "P")
        job_request(kind=JobKind.ORDER, entity_id=order_id)
    return pairs


def test_it_records_the_other_items_of_a_chunk_when_one_item_fails(sb, monkeypatch):
    (bad, bad_deal), *good = orders_moved(sb, 3)
    real = record._stored_make

    def failing_for_bad(item, **kwargs):
        stored = real(item, **kwargs)
        if item.order_id == bad:

            def boom() -> None:
                raise DatabaseError("disk I/O error")  # met inside the chunk's transaction

            stored.writes.append(boom)
        return stored

    monkeypatch.setattr(record, "_stored_make", failing_for_bad)
    run_worker()

    for order_id, _deal_id in good:
        assert Link.objects.get(order_id=order_id).base_deal_stage == "PREPARATION"
        assert AuditEntry.objects.filter(order_id=order_id, outcome="applied").count() == 1
        assert not Job.objects.filter(entity_id=order_id).exclude(state=JobState.DONE).exists()
    # The failed item stored nothing of its ending (the chunk's transaction rolled back): its write is
    # retried, and the audit says so once.
    assert sb.crm.get_deal(int(bad_deal))["STAGE_ID"] == "PREPARATION"
    assert Link.objects.get(order_id=bad).base_deal_stage == "NEW"
    assert [
        e.outcome for e in AuditEntry.objects.filter(order_id=bad, outcome__in=["applied", "retried"])
    ] == ["retried"]
    assert "disk I/O error" in Job.objects.get(entity_id=bad, state=JobState.PENDING).last_error


def test_it_records_nothing_of_an_order_whose_lock_the_run_lost_and_the_rest_as_usual(sb, monkeypatch):
    (lost, _lost_deal), (kept, _kept_deal) = orders_moved(sb, 2)
    real = write.writes_send

    def write_then_lose_one_lock(run):
        real(run)
        # Another worker took the order over after this run's lease ran out.
        SyncLock.objects.filter(order_id=lost).update(token="another-run")

    monkeypatch.setattr(write, "writes_send", write_then_lose_one_lock)
    run_worker()

    lost_link, kept_link = Link.objects.get(order_id=lost), Link.objects.get(order_id=kept)
    assert (lost_link.base_deal_stage, lost_link.intent_value) == ("NEW", "PREPARATION")  # for that worker
    assert not AuditEntry.objects.filter(order_id=lost, outcome="applied").exists()
    assert Job.objects.get(entity_id=lost, state=JobState.RUNNING)  # its lease runs out; never finished here
    assert (kept_link.base_deal_stage, kept_link.intent_value) == ("PREPARATION", "")
    assert AuditEntry.objects.filter(order_id=kept, outcome="applied").count() == 1
    assert SyncLock.objects.filter(order_id=lost, token="another-run").exists()


def test_it_audits_each_item_of_a_chunk_and_finishes_its_jobs(sb):
    pairs = orders_moved(sb, 3)
    run_worker()

    for order_id, deal_id in pairs:
        entry = AuditEntry.objects.get(order_id=order_id, outcome="applied")
        assert (entry.deal_id, entry.link, entry.origin) == (
            deal_id,
            Link.objects.get(order_id=order_id),
            "event",
        )
        assert entry.before["order_status"] == "P"
        assert entry.after == {
            "deal_stage": "PREPARATION",
            "base": {"order_status": "P", "deal_stage": "PREPARATION", "paid": False},
        }
    assert not Job.objects.exclude(state=JobState.DONE).exists()
    assert not SyncLock.objects.exists()


def test_it_lets_the_next_run_take_an_order_recorded_earlier_in_a_run_still_recording(sb, monkeypatch):
    (first, _), (second, _) = orders_moved(sb, 2)
    monkeypatch.setattr(record, "RECORD_CHUNK", {"sqlite": 1, "postgresql": 1})
    real = record._chunk_record
    recorded: list[str] = []
    next_run = []

    def another_worker_meanwhile(run, items, **kwargs):
        if recorded == [first] and not next_run:
            # The first order's item is recorded, the run is not over; the order moves again and another
            # worker runs it.
            job_request(kind=JobKind.ORDER, entity_id=first, event="again")
            next_run.extend(jobs_claim(queue=Queue.DEFAULT, limit=50))
            jobs_handle(next_run)
        results = real(run, items, **kwargs)
        recorded.extend(item.order_id for item in items)
        return results

    monkeypatch.setattr(record, "_chunk_record", another_worker_meanwhile)
    run_worker()

    assert recorded == [first, first, second]  # the other worker recorded its item in between
    assert [job.entity_id for job in next_run] == [first]
    assert Job.objects.get(id=next_run[0].id).state == JobState.DONE  # not handed back as busy
    assert not Job.objects.filter(last_error__contains="order busy").exists()
