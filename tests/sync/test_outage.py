"""A portal outage: the jobs that failed on it wait for the portal, one probe every few seconds tells when it
is back, and they are released at once [docs/reliability.md 8]."""

from __future__ import annotations

import time

import pytest
from django.utils import timezone

from statussync.bitrix import AuthError, RateLimitedError, TransientError, portal_unreachable
from statussync.health import health_report
from statussync.jobs import job_request, jobs_claim, jobs_process
from statussync.models import AuditEntry, Job, JobKind, JobState, PortalHealth
from statussync.outage import outage_hold, portal_probe
from statussync.sync import jobs_handle
from tests.support.sandbox import linked_pair, run_worker


def _down_with_one_job(sb) -> tuple[str, str, Job]:
    order_id, deal_id = linked_pair(sb)
    sb.shop.set_order_status(int(order_id), "P")
    sb.set_faults("crm", outage_seconds=600)
    job_request(kind=JobKind.ORDER, entity_id=order_id)
    run_worker()
    return order_id, deal_id, Job.objects.get(kind="order", entity_id=order_id, state=JobState.PENDING)


def test_it_holds_the_jobs_of_a_down_portal_whatever_their_backoff_and_probes_once(sb):
    order_id, _, job = _down_with_one_job(sb)
    assert job.waiting_for_portal == "crm"
    assert "503" in job.last_error
    assert AuditEntry.objects.filter(order_id=order_id, outcome="retried").exists()
    requests_before = sb.counters()["crm"]["rest_requests"] + sb.counters()["crm"]["rest_rejected"]["outage"]

    Job.objects.filter(id=job.id).update(not_before=timezone.now())  # its own backoff is over
    assert run_worker() == 0  # no retry while the portal is down
    assert portal_probe(portal="crm") is False
    assert portal_probe(portal="crm") is None  # another process probed a moment ago: not our turn
    assert outage_hold() is True

    counters = sb.counters()["crm"]
    assert counters["rest_requests"] + counters["rest_rejected"]["outage"] == requests_before + 1


def test_it_releases_the_waiting_jobs_the_moment_a_probe_gets_through(sb):
    _, deal_id, job = _down_with_one_job(sb)
    assert job.not_before > timezone.now()

    sb.clear_faults()
    assert outage_hold() is False  # the probe got through: nothing waits any more

    job.refresh_from_db()
    assert (job.waiting_for_portal, job.not_before <= timezone.now()) == ("", True)
    assert run_worker() == 1
    assert sb.crm.get_deal(int(deal_id))["STAGE_ID"] == "PREPARATION"
    crm = health_report()["portals"]["crm"]
    assert crm["ok"] is True
    assert crm["last_outage_since"] is not None
    assert crm["recovered_at"] is not None
    assert crm["last_outage_since"] < crm["recovered_at"]


def test_it_takes_the_backlog_within_a_few_seconds_of_the_portals_return(sb, settings):
    settings.BXSYNC_RETRY_BASE_SECONDS = settings.BXSYNC_RETRY_MAX_SECONDS = 60  # the backoff alone: a minute
    order_id, deal_id = linked_pair(sb)
    sb.shop.set_order_status(int(order_id), "P")
    sb.set_faults("crm", outage_seconds=2.0)
    back = time.monotonic() + 2.0
    job_request(kind=JobKind.ORDER, entity_id=order_id)
    run_worker()
    assert Job.objects.get(kind="order", entity_id=order_id, state=JobState.PENDING).waiting_for_portal

    # A worker with nothing else to do stays while the job waits for the CRM, and takes it when it is back.
    jobs_process(queue="default", handle=jobs_handle, max_seconds=20)

    assert sb.crm.get_deal(int(deal_id))["STAGE_ID"] == "PREPARATION"
    assert time.monotonic() - back <= 5.0


def test_it_keeps_auth_failures_at_the_longest_backoff_without_probing(sb, settings):
    order_id, _ = linked_pair(sb)
    settings.BXSYNC_CRM_REST_URL = settings.BXSYNC_CRM_REST_URL.replace("/rest/1/", "/rest/2/")  # wrong user
    job_request(kind=JobKind.ORDER, entity_id=order_id)
    run_worker()

    job = Job.objects.get(kind="order", entity_id=order_id, state=JobState.PENDING)
    assert job.waiting_for_portal == ""
    assert (job.not_before - timezone.now()).total_seconds() > settings.BXSYNC_RETRY_MAX_SECONDS - 5
    assert outage_hold() is False
    assert health_report()["portals"]["crm"]["auth_failed"] is True


@pytest.mark.parametrize(
    ("error", "down"),
    [
        (TransientError(portal="crm", method="batch", http_status=503, code="SERVICE_UNAVAILABLE"), True),
        (TransientError(portal="cms", method="batch", description="timed out after 20s"), True),
        (TransientError(portal="crm", method="batch", http_status=500, code="INTERNAL_SERVER_ERROR"), True),
        (TransientError(portal="crm", method="batch", http_status=503, code="QUERY_LIMIT_EXCEEDED"), False),
        (
            TransientError(
                portal="crm", method="crm.deal.update", http_status=429, code="OPERATION_TIME_LIMIT"
            ),
            False,
        ),
        (RateLimitedError(portal="crm", method="batch", retry_after=3.0), False),
        (TransientError(portal="db", method="link", code="race"), False),
        (AuthError(portal="crm", method="batch", http_status=401, code="NO_AUTH_FOUND"), False),
    ],
)
def test_it_waits_for_the_portal_only_when_the_portal_is_down(error, down):
    assert portal_unreachable(error) is down


def test_it_claims_the_jobs_waiting_for_a_portal_once_its_health_is_good_again(sb):
    _, _, job = _down_with_one_job(sb)
    Job.objects.filter(id=job.id).update(not_before=timezone.now())
    assert jobs_claim(queue="default", limit=10) == []
    PortalHealth.objects.update(failing_since=None)  # any call to the portal succeeded
    assert [j.id for j in jobs_claim(queue="default", limit=10)] == [job.id]
