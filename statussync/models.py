"""bxsync's records: the mapping, order↔deal links with their base state, intake, pending work and audit.

Uniqueness rules live in the database (partial unique constraints), so two workers or two admins can never
create a second active link for one order, or an ambiguous mapping rule.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _


class Side(models.TextChoices):
    CMS = "cms", _("Shop (order)")
    CRM = "crm", _("CRM (deal)")


class Direction(models.TextChoices):
    BOTH = "both", _("Both ways")
    TO_CRM = "to_crm", _("Shop → CRM only")
    TO_CMS = "to_cms", _("CRM → shop only")


class ConflictPolicy(models.TextChoices):
    LATEST = "latest", _("Latest change wins")
    CMS_WINS = "cms_wins", _("Shop wins")
    CRM_WINS = "crm_wins", _("CRM wins")
    MANUAL = "manual", _("Flag for a manager")


class Pipeline(models.Model):
    """Mapping settings of one CRM pipeline (deal category)."""

    pipeline_id = models.IntegerField(
        _("pipeline"), unique=True, help_text=_("The CRM's deal pipeline; 0 is the default one.")
    )
    paid_stage = models.CharField(
        _("paid stage"),
        max_length=50,
        blank=True,
        help_text=_("The stage a deal moves to when its order is paid."),
    )
    conflict_policy = models.CharField(
        _("when both sides changed"),
        max_length=10,
        choices=ConflictPolicy.choices,
        default=ConflictPolicy.LATEST,
    )

    class Meta:
        ordering = ["pipeline_id"]
        verbose_name = _("pipeline mapping")
        verbose_name_plural = _("pipeline mappings")

    def __str__(self) -> str:
        from statussync.mapping.catalog import pipeline_label

        return pipeline_label(self.pipeline_id)


class StatusRule(models.Model):
    """One order status ↔ deal stage pair of a pipeline, valid in one or both directions."""

    pipeline = models.ForeignKey(
        Pipeline, on_delete=models.CASCADE, related_name="rules", verbose_name=_("pipeline")
    )
    order_status = models.CharField(_("order status"), max_length=50)
    deal_stage = models.CharField(_("deal stage"), max_length=50)
    direction = models.CharField(
        _("direction"), max_length=6, choices=Direction.choices, default=Direction.BOTH
    )

    class Meta:
        ordering = ["pipeline__pipeline_id", "id"]
        verbose_name = _("rule")
        verbose_name_plural = _("rules")
        constraints = [
            # Within one pipeline and direction a source value maps to at most one target (docs/contract.md).
            models.UniqueConstraint(
                fields=["pipeline", "order_status"],
                condition=Q(direction__in=["both", "to_crm"]),
                name="one_stage_per_order_status",
            ),
            models.UniqueConstraint(
                fields=["pipeline", "deal_stage"],
                condition=Q(direction__in=["both", "to_cms"]),
                name="one_status_per_deal_stage",
            ),
        ]

    def __str__(self) -> str:
        arrow = {"both": "↔", "to_crm": "→", "to_cms": "←"}[self.direction]
        return f"{self.order_status} {arrow} {self.deal_stage}"


class AwaitingPaymentStatus(models.Model):
    """An order status that means "not paid yet": a paid order is never sent back into one."""

    order_status = models.CharField(_("order status"), max_length=50, unique=True)

    class Meta:
        verbose_name = _("awaiting-payment status")
        verbose_name_plural = _("awaiting-payment statuses")

    def __str__(self) -> str:
        return self.order_status


class LinkState(models.TextChoices):
    ACTIVE = "active", _("Active")
    CLOSED = "closed", _("Closed")


class Link(models.Model):
    """An order linked to a deal, with the base: the last state both sides agreed on."""

    order_id = models.CharField(_("order"), max_length=32, db_index=True)
    deal_id = models.CharField(_("deal"), max_length=32, db_index=True)
    state = models.CharField(_("state"), max_length=8, choices=LinkState.choices, default=LinkState.ACTIVE)
    pipeline_id = models.IntegerField(_("pipeline"), null=True, blank=True)
    base_order_status = models.CharField(_("agreed order status"), max_length=50, blank=True)
    base_deal_stage = models.CharField(_("agreed deal stage"), max_length=50, blank=True)
    base_paid = models.BooleanField(_("agreed as paid"), default=False)
    base_at = models.DateTimeField(
        _("agreed at"), null=True, blank=True, help_text=_("When the base was last moved.")
    )
    # What bxsync itself wrote last, so the echo of that write is recognised and named as such.
    last_write_side = models.CharField(_("last written side"), max_length=3, choices=Side.choices, blank=True)
    last_write_value = models.CharField(_("last written value"), max_length=50, blank=True)
    last_write_at = models.DateTimeField(_("last written"), null=True, blank=True)
    # The side whose event of bxsync's last write (confirmed by its read-back) has not come yet: the first
    # single event of that side is taken for it without reading (statussync/sync/echoes.py). Cleared by any
    # run that reads the link.
    echo_expected = models.CharField(
        _("echo expected from"), max_length=3, choices=Side.choices, blank=True, default=""
    )
    needs_attention = models.BooleanField(_("needs attention"), default=False, db_index=True)
    attention_reason = models.CharField(_("why it needs attention"), max_length=300, blank=True)
    # The same reason as a code with parameters (statussync.reasons), rendered in the reader's language.
    attention = models.JSONField(_("why it needs attention (code)"), null=True, blank=True)
    # A write sent but not yet confirmed, with the base it leads to. Recorded before the write goes out, so a
    # write that lands while its reply is lost (a timeout, a 5xx after commit, a worker killed, the database
    # locked before the base moved) is recognised by the next run when the target shows the value: the base
    # is adopted, and the write is not sent a second time.
    intent_side = models.CharField(
        _("unconfirmed write: side"), max_length=3, choices=Side.choices, blank=True
    )
    intent_value = models.CharField(_("unconfirmed write: value"), max_length=50, blank=True)
    intent_base = models.JSONField(_("unconfirmed write: base"), null=True, blank=True)
    intent_at = models.DateTimeField(_("unconfirmed write: sent"), null=True, blank=True)
    # Both sides as the last run read them (after its own write), so the admin shows where the order and the
    # deal are now without calling the portals.
    last_order_status = models.CharField(_("order status now"), max_length=50, blank=True)
    last_order_paid = models.BooleanField(_("order paid now"), null=True, blank=True)
    last_deal_stage = models.CharField(_("deal stage now"), max_length=50, blank=True)
    last_read_at = models.DateTimeField(
        _("last read"), null=True, blank=True, help_text=_("When a run last read both sides.")
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)
    closed_at = models.DateTimeField(_("closed"), null=True, blank=True)
    close_reason = models.CharField(_("why closed"), max_length=200, blank=True)
    # Why and by whom the link was closed, as a reason code with parameters (statussync.reasons); empty when
    # bxsync closed it itself (a deleted order or deal: `close_reason` says so).
    closure = models.JSONField(_("why closed (code)"), null=True, blank=True)
    closed_by = models.CharField(_("closed by"), max_length=150, blank=True)

    class Meta:
        verbose_name = _("link")
        verbose_name_plural = _("links")
        permissions = [
            # Also created by the roles' data migration (the `mapping` branch); declared here so the admin's
            # actions can name them before that lands.
            ("resync_link", _("Can resync links and take one side's value")),
            ("repair_link", _("Can rediscover links and resolve link problems")),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["order_id"], condition=Q(state="active"), name="one_active_link_per_order"
            ),
            models.UniqueConstraint(
                fields=["deal_id"], condition=Q(state="active"), name="one_active_link_per_deal"
            ),
        ]
        indexes = [
            # The links that need a person (the dashboard, the links list), newest first: a handful among
            # hundreds of thousands. SQLite cannot use an index for the bare boolean test the ORM writes
            # (`WHERE needs_attention`), but it does use a partial index with the same condition.
            models.Index(
                fields=["-updated_at"],
                condition=Q(needs_attention=True, state="active"),
                name="link_needs_attention",
            ),
            # A mapping change's impact counts the active links agreed on a (pipeline, status) or
            # (pipeline, stage) whose rule changed (statussync.mapping.impact): without these, a scan of every
            # link.
            models.Index(
                fields=["pipeline_id", "base_order_status"],
                condition=Q(state="active"),
                name="link_active_base_status",
            ),
            models.Index(
                fields=["pipeline_id", "base_deal_stage"],
                condition=Q(state="active"),
                name="link_active_base_stage",
            ),
        ]

    def __str__(self) -> str:
        return f"order {self.order_id} ↔ deal {self.deal_id}"


class SyncLock(models.Model):
    """A run's hold on one order and its linked deal: no other run reads, decides or writes for the pair.

    Keyed by order id, not by link, so a pair never seen before is held too (an order job and a deal job for a
    new pair would otherwise decide and write at once). A short lease rather than a database lock: it must
    survive REST calls that take seconds, and on SQLite an open write transaction would block every webhook
    for that long. Every write a run records checks its token (fencing), so a run that outlived its lease
    changes nothing.
    """

    order_id = models.CharField(max_length=32, unique=True)
    token = models.CharField(max_length=32)
    until = models.DateTimeField()
    # Held by a payment's run: a payment takes its order over from any other run, never from a payment's.
    priority = models.BooleanField(default=False)

    def __str__(self) -> str:
        return f"order {self.order_id} held until {self.until:%H:%M:%S}"


class UnmappedValue(models.Model):
    """A status or stage seen without a mapping rule: nothing was written; a manager should add a rule."""

    side = models.CharField(_("side"), max_length=3, choices=Side.choices)
    pipeline_id = models.IntegerField(_("pipeline"))
    value = models.CharField(_("value"), max_length=50)
    first_seen = models.DateTimeField(_("first seen"), auto_now_add=True)
    last_seen = models.DateTimeField(_("last seen"), auto_now=True)
    times_seen = models.PositiveIntegerField(_("times seen"), default=1)

    class Meta:
        verbose_name = _("unmapped value")
        verbose_name_plural = _("unmapped values")
        constraints = [models.UniqueConstraint(fields=["side", "pipeline_id", "value"], name="unmapped_once")]

    def __str__(self) -> str:
        return f"{self.get_side_display()}: {self.value} (pipeline {self.pipeline_id})"


class InboundEvent(models.Model):
    """A webhook event exactly as far as it matters, stored before the 200 (Bitrix never re-sends)."""

    side = models.CharField(_("side"), max_length=3, choices=Side.choices)
    event = models.CharField(_("event"), max_length=64)
    entity_id = models.CharField(_("id"), max_length=32, blank=True)
    ts = models.CharField(
        _("sent at (Unix)"), max_length=20, blank=True, help_text=_("When the event left Bitrix's queue.")
    )
    received_at = models.DateTimeField(_("received"), auto_now_add=True, db_index=True)
    dedupe_key = models.CharField(_("deduplication key"), max_length=200, unique=True)
    duplicates = models.PositiveIntegerField(_("duplicates"), default=0)
    # Payload with the application token and any OAuth tokens removed.
    payload = models.JSONField(_("payload"), default=dict)

    class Meta:
        verbose_name = _("webhook event")
        verbose_name_plural = _("webhook events")
        indexes = [
            # A link's timeline and the admin's search find the events of one order or deal, newest first.
            models.Index(fields=["entity_id", "received_at"], name="event_entity_time"),
        ]

    def __str__(self) -> str:
        return f"{self.event} {self.entity_id}"


class JobKind(models.TextChoices):
    ORDER = "order", _("Order changed")
    DEAL = "deal", _("Deal changed")
    PAYMENT = "payment", _("Payment changed")


class JobState(models.TextChoices):
    PENDING = "pending", _("Pending")
    RUNNING = "running", _("Running")
    DONE = "done", _("Done")
    DEAD = "dead", _("Dead letter")
    # A dead letter a manager chose not to replay: kept (not deleted) so the audit can say what was given up.
    DISCARDED = "discarded", _("Discarded")


class JobOrigin(models.TextChoices):
    EVENT = "event", _("Bitrix event")
    RECONCILE = "reconcile", _("Regular check")
    ADMIN = "admin", _("Manager")


class Queue(models.TextChoices):
    DEFAULT = "default", _("Default")
    PAYMENTS = "payments", _("Payments")


class Job(models.Model):
    """Pending work for one order, deal or payment. The database, not the broker, is the record of it.

    Many events for one entity coalesce into the one pending job (a partial unique constraint); an event for
    an entity whose job is already running creates a new pending job, so the later change is read again.
    """

    kind = models.CharField(_("kind"), max_length=8, choices=JobKind.choices)
    entity_id = models.CharField(_("id"), max_length=32)
    queue = models.CharField(_("queue"), max_length=10, choices=Queue.choices, default=Queue.DEFAULT)
    state = models.CharField(
        _("state"), max_length=10, choices=JobState.choices, default=JobState.PENDING, db_index=True
    )
    origin = models.CharField(_("origin"), max_length=16, choices=JobOrigin.choices, default=JobOrigin.EVENT)
    event = models.CharField(
        _("event"), max_length=64, blank=True, help_text=_("The (first) event that asked for this work.")
    )
    events_coalesced = models.PositiveIntegerField(_("events coalesced"), default=1)
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    not_before = models.DateTimeField(_("not before"), db_index=True)
    lease_until = models.DateTimeField(_("leased until"), null=True, blank=True)
    claim_token = models.CharField(_("claim token"), max_length=32, blank=True, db_index=True)
    last_error = models.TextField(_("last error"), blank=True)
    # A manager's "take the shop's (CRM's) value": the engine decides with that side winning.
    wins = models.CharField(_("side that wins"), max_length=3, choices=Side.choices, blank=True)
    # (A database default: the webhook's upsert writes raw SQL without it.)
    # The portal this job failed on because it did not answer: while that portal is down the job waits for
    # it (one probe every few seconds, `statussync.outage`), not for its own backoff, and is released the
    # moment the portal answers.
    waiting_for_portal = models.CharField(
        _("waiting for portal"), max_length=3, choices=Side.choices, blank=True, db_default=""
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)

    class Meta:
        verbose_name = _("job")
        verbose_name_plural = _("jobs")
        permissions = [
            # Also created by the roles' data migration (the `mapping` branch), see Link.Meta.
            ("replay_job", _("Can replay dead-letter jobs")),
            ("discard_job", _("Can discard dead-letter jobs")),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "entity_id"], condition=Q(state="pending"), name="one_pending_job_per_entity"
            ),
        ]
        indexes = [models.Index(fields=["queue", "state", "not_before"])]

    def __str__(self) -> str:
        # The change page's title: in the reader's words, not the codes ("order 1 (done)").
        return f"{self.get_kind_display()}: {self.entity_id} ({self.get_state_display()})"


class DeadLetter(Job):
    """The dead-letter list: jobs that failed for good, with their error, to replay or discard."""

    class Meta:
        proxy = True
        verbose_name = _("dead letter")
        verbose_name_plural = _("dead letters")


class Outcome(models.TextChoices):
    APPLIED = "applied", _("Applied")
    PAYMENT_APPLIED = "payment_applied", _("Payment applied")
    ECHO = "echo", _("Echo of our own write")
    NO_CHANGE = "no_change", _("No change")
    CONFLICT_RESOLVED = "conflict_resolved", _("Conflict resolved")
    CONFLICT_FLAGGED = "conflict_flagged", _("Conflict flagged")
    REGRESSION_BLOCKED = "regression_blocked", _("Regression blocked")
    UNMAPPED = "unmapped", _("Unmapped")
    UNLINKED = "unlinked", _("Unlinked")
    AMBIGUOUS = "ambiguous", _("Ambiguous")
    LINKED = "linked", _("Linked")
    CLOSED = "closed", _("Link closed")
    IGNORED = "ignored", _("Ignored")
    FAILED = "failed", _("Failed")
    RETRIED = "retried", _("Retried")
    RECEIVED = "received", _("Event received")


class AuditEntry(models.Model):
    """One event or decision, with enough detail to answer "why is this order in this status?"."""

    # Indexed below, with the filters (the table grows to millions of rows).
    created_at = models.DateTimeField(_("when"), auto_now_add=True)
    side = models.CharField(_("side"), max_length=3, choices=Side.choices, blank=True)
    event = models.CharField(_("event"), max_length=64, blank=True)
    order_id = models.CharField(_("order"), max_length=32, blank=True, db_index=True)
    deal_id = models.CharField(_("deal"), max_length=32, blank=True, db_index=True)
    link = models.ForeignKey(
        Link,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="audit",
        db_index=False,
        verbose_name=_("link"),
    )
    outcome = models.CharField(_("outcome"), max_length=20, choices=Outcome.choices)
    before = models.JSONField(_("before"), default=dict, blank=True)
    after = models.JSONField(_("after"), default=dict, blank=True)
    message = models.TextField(_("message"), blank=True, help_text=_("The reason, in English (searchable)."))
    # The reason as a code with parameters (statussync.reasons), so the admin renders it in the reader's
    # language; `message` keeps the English text for search and export.
    reason = models.JSONField(_("reason"), null=True, blank=True)
    rest_calls = models.PositiveIntegerField(_("REST calls"), default=0)
    latency_ms = models.PositiveIntegerField(_("took (ms)"), null=True, blank=True)
    origin = models.CharField(_("origin"), max_length=16, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("audit entry")
        verbose_name_plural = _("audit entries")
        # Each index lets a page of the admin read its rows newest first and stop after one page, instead of
        # scanning and sorting millions of rows. A filter on a value most rows share (side) needs none: the
        # time index finds a page of them at once. See docs/decisions.md "The audit at millions of rows".
        indexes = [
            # The unfiltered list, date ranges, the retention purge; with the outcome in the index the
            # dashboard's hourly counts by outcome read the index alone.
            models.Index(fields=["created_at", "outcome"], name="audit_time_outcome"),
            models.Index(fields=["outcome", "created_at"], name="audit_outcome_time"),
            models.Index(fields=["origin", "created_at"], name="audit_origin_time"),
            # A link's timeline, in order.
            models.Index(fields=["link", "created_at"], name="audit_link_time"),
        ]
        permissions = [("view_dashboard", _("Can view the dashboard"))]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.get_outcome_display()}"


class Watermark(models.Model):
    """How far reconciliation has read each portal's change feed.

    A pass reads the changes since `value` (less an overlap) page by page in id order and records after each
    page how far it got (`window_*`), so a pass cut short — the task timeout, a portal outage, a restart —
    resumes there instead of starting a larger window. `value` moves when a window is read to its end.
    """

    portal = models.CharField(max_length=3, choices=Side.choices, unique=True)
    value = models.DateTimeField()
    window_since = models.DateTimeField(
        null=True, blank=True, help_text=_("The window being read: changes since.")
    )
    window_started = models.DateTimeField(null=True, blank=True, help_text=_("When that window was opened."))
    window_after_id = models.BigIntegerField(default=0, help_text=_("The last id of the window read so far."))
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.portal} since {self.value:%Y-%m-%d %H:%M:%S}"


class PortalHealth(models.Model):
    """Last contact and last error per portal, for /api/health/ (kept without secrets).

    Written only through `statussync.health.portal_contact_record`.
    """

    portal = models.CharField(max_length=3, choices=Side.choices, unique=True)
    last_contact_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    # The first failure after the last success; empty while the portal answers.
    failing_since = models.DateTimeField(null=True, blank=True)
    auth_failed = models.BooleanField(default=False)
    # The last outage that ended: when it began and when the portal answered again.
    last_outage_since = models.DateTimeField(null=True, blank=True)
    recovered_at = models.DateTimeField(null=True, blank=True)
    # The last probe of a failing portal: all processes share one probe every few seconds.
    probed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.portal


# --- A portal connected as a Bitrix24 application (OAuth 2.0), instead of webhooks --------------------------
# Written only through `statussync.applications`; the tokens and the client secret never leave the server:
# the admin shows neither, and `__str__`/`__repr__` name the portal only.


class IntakeMode(models.TextChoices):
    PULL = "pull", _("Pull: bxsync reads the portal's offline-event queue")
    PUSH = "push", _("Push: the portal posts events to bxsync")


class ConnectionState(models.TextChoices):
    NEW = "new", _("Not connected yet")
    CONNECTED = "connected", _("Connected")
    DISCONNECTED = "disconnected", _("Disconnected")


class ConnectedPortal(models.Model):
    """One portal bxsync talks to as a local application: its address, the application's keys, the tokens."""

    portal = models.CharField(_("portal"), max_length=3, choices=Side.choices, unique=True)
    address = models.URLField(_("portal address"), help_text=_("For example https://example.bitrix24.ru"))
    client_id = models.CharField(_("client id"), max_length=128)
    client_secret = models.CharField(_("client secret"), max_length=255)
    # settings/cloud-and-on-premise/on-premise/index.md: renew at oauth.bitrix.info, cloud and on-premises
    # alike; an isolated on-premises portal with its own provider gives its own address here.
    oauth_server = models.URLField(_("authorization server"), default="https://oauth.bitrix.info/")
    intake_mode = models.CharField(
        _("intake"), max_length=4, choices=IntakeMode.choices, default=IntakeMode.PULL
    )
    events_url = models.URLField(
        _("bxsync's public address"),
        blank=True,
        help_text=_("Push only: where the portal posts events, e.g. https://bxsync.example.com"),
    )
    state = models.CharField(
        _("state"), max_length=12, choices=ConnectionState.choices, default=ConnectionState.NEW
    )
    state_reason = models.CharField(_("why"), max_length=300, blank=True)
    state_changed_at = models.DateTimeField(_("state changed"), null=True, blank=True)
    access_token = models.CharField(_("access token"), max_length=255, blank=True, editable=False)
    refresh_token = models.CharField(_("refresh token"), max_length=255, blank=True, editable=False)
    renewed_at = models.DateTimeField(_("tokens renewed"), null=True, blank=True, editable=False)
    client_endpoint = models.URLField(_("REST address"), blank=True, editable=False)
    member_id = models.CharField(_("portal id"), max_length=64, blank=True, editable=False)
    application_token = models.CharField(_("application token"), max_length=64, blank=True, editable=False)
    oauth_state = models.CharField(_("sign-in state"), max_length=64, blank=True, editable=False)
    # The offline batch reserved and not yet cleared (event.offline.get clear=0): read again after a crash.
    process_id = models.CharField(_("reserved batch"), max_length=64, blank=True, editable=False)
    offline_extended = models.BooleanField(_("reserve-then-clear available"), null=True, editable=False)
    bound_events = models.JSONField(_("bound events"), default=list, blank=True, editable=False)
    queue_depth = models.IntegerField(_("events waiting"), null=True, blank=True, editable=False)
    last_pull_at = models.DateTimeField(_("last read of the queue"), null=True, blank=True, editable=False)

    class Meta:
        verbose_name = _("connected portal")
        verbose_name_plural = _("connected portals")

    def __str__(self) -> str:
        return str(self.get_portal_display())

    def __repr__(self) -> str:
        return f"<ConnectedPortal {self.portal} {self.state}>"


class RateBucket(models.Model):
    """The client-side rate limiter's bucket of one portal, shared by every process through the database
    when there is no Redis: its GCRA "theoretical arrival time" (`statussync.bitrix.ratelimit`).

    Written only through `ratelimit.DatabaseBucketStore`, one short transaction per request to Bitrix.
    """

    key = models.CharField(max_length=255, primary_key=True)
    tat = models.FloatField()  # seconds since the epoch (time.time()) when the bucket is empty again

    def __str__(self) -> str:
        return self.key


# --- The catalog of names: what the portals call their statuses, pipelines and stages ---------------------
# Fetched by `statussync.mapping.catalog_refresh.catalog_refresh` (a button in the admin and a schedule); read
# through the cached helpers of `statussync.mapping.catalog` (`status_label`, `stage_label`,
# `pipeline_label`). A code that leaves a portal keeps its row with `present` False, so the admin can say
# "not in the CRM any more" instead of hiding it.


class StageSemantics(models.TextChoices):
    # STAGE_SEMANTIC_ID's letters [docs/bitrix.md "Deals"].
    IN_PROGRESS = "P", _("in progress")
    SUCCESS = "S", _("success")
    FAILURE = "F", _("failure")


class CatalogPipeline(models.Model):
    """A deal pipeline of the CRM (`crm.category.list`, entityTypeId 2)."""

    pipeline_id = models.IntegerField(_("pipeline"), unique=True)
    name = models.CharField(_("name"), max_length=255)
    sort = models.IntegerField(_("sort"), default=0)
    present = models.BooleanField(_("in the CRM"), default=True)
    refreshed_at = models.DateTimeField(_("last seen"))

    class Meta:
        ordering = ["sort", "pipeline_id"]
        verbose_name = _("CRM pipeline")
        verbose_name_plural = _("CRM pipelines")

    def __str__(self) -> str:
        return f"{self.name} ({self.pipeline_id})"


class CatalogStage(models.Model):
    """A deal stage of one pipeline (`crm.status.list`, ENTITY_ID DEAL_STAGE or DEAL_STAGE_<n>)."""

    pipeline_id = models.IntegerField(_("pipeline"), db_index=True)
    code = models.CharField(_("code"), max_length=50)
    name = models.CharField(_("name"), max_length=255)
    sort = models.IntegerField(_("sort"), default=0)
    semantics = models.CharField(
        _("meaning"), max_length=1, choices=StageSemantics.choices, default=StageSemantics.IN_PROGRESS
    )
    color = models.CharField(_("colour"), max_length=16, blank=True)
    present = models.BooleanField(_("in the CRM"), default=True)
    refreshed_at = models.DateTimeField(_("last seen"))

    class Meta:
        ordering = ["pipeline_id", "sort", "code"]
        constraints = [models.UniqueConstraint(fields=["pipeline_id", "code"], name="one_stage_per_code")]
        verbose_name = _("CRM deal stage")
        verbose_name_plural = _("CRM deal stages")
        permissions = [
            ("refresh_catalog", _("Can refresh the names of statuses and stages from the portals"))
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"


class CatalogStatus(models.Model):
    """An order status of the shop (`sale.status.list`, type O) with its names (`sale.statusLang.list`)."""

    code = models.CharField(_("code"), max_length=50, unique=True)
    # {"ru": "Принят, ожидается оплата", "en": "Accepted, awaiting payment"}: one name per language the
    # shop has; the admin shows the reader's.
    names = models.JSONField(_("names"), default=dict)
    sort = models.IntegerField(_("sort"), default=0)
    color = models.CharField(_("colour"), max_length=16, blank=True)
    present = models.BooleanField(_("in the shop"), default=True)
    refreshed_at = models.DateTimeField(_("last seen"))

    class Meta:
        ordering = ["sort", "code"]
        verbose_name = _("shop order status")
        verbose_name_plural = _("shop order statuses")

    def __str__(self) -> str:
        from statussync.mapping.catalog import status_label

        return status_label(self.code)


class MappingChangeSource(models.TextChoices):
    ADMIN_FORM = "admin", _("admin: pipeline form")
    ADMIN_IMPORT = "admin_import", _("admin: file import")
    ADMIN_DELETE = "admin_delete", _("admin: pipeline deleted")
    COMMAND = "command", _("statusmap import")


class MappingChange(models.Model):
    """One change of the mapping: who, when, and the whole document before and after (read-only history).

    Whole documents rather than row diffs: they are small, they are exactly what `statusmap export` prints
    (so an old mapping can be restored with `statusmap import`), and the admin derives the readable diff.
    """

    created_at = models.DateTimeField(_("when"), auto_now_add=True, db_index=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("who"),
    )
    # Kept when the user is deleted; for `statusmap import`, the operating-system user who ran it.
    username = models.CharField(_("who"), max_length=150, blank=True)
    source = models.CharField(_("how"), max_length=16, choices=MappingChangeSource.choices)
    before = models.JSONField(_("before"))
    after = models.JSONField(_("after"))
    links_affected = models.PositiveIntegerField(_("links that map differently"), null=True, blank=True)
    links_moving = models.PositiveIntegerField(_("links that would move"), null=True, blank=True)
    # Save-and-resync: the links are queued in chunks by a background task that records how far it got
    # (resync_after_id) and holds a lease while it works, so a task that dies is resumed by the sweeper
    # where it stopped, and two tasks never queue the same chunk.
    resync_requested = models.BooleanField(_("resync requested"), default=False)
    resync_queued = models.PositiveIntegerField(_("links queued"), default=0)
    resync_after_id = models.BigIntegerField(_("resync: last link queued"), default=0)
    resync_lease_until = models.DateTimeField(_("resync: leased until"), null=True, blank=True)
    resync_token = models.CharField(_("resync: claim token"), max_length=32, blank=True)
    resync_finished_at = models.DateTimeField(_("resync queued completely"), null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("mapping change")
        verbose_name_plural = _("mapping changes")

    def __str__(self) -> str:
        # `statusmap import` run without a user has no username: its source says who, where "?" did not.
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.username or self.get_source_display()}"


class LinkProblemKind(models.TextChoices):
    DEAL_ORDER_CHANGED = "deal_order_changed", _("The deal names another order")
    SEVERAL_DEALS = "several_deals", _("Several deals name one order")


class LinkProblemState(models.TextChoices):
    OPEN = "open", _("Open")
    RESOLVED = "resolved", _("Resolved")


class LinkProblem(models.Model):
    """A link bxsync cannot sync until a manager says which deal goes with which order.

    Written by the sync run (`statussync.sync.record`): a linked deal whose order field now names another
    order (or none), or several deals naming one order. Kept after it is resolved, with who resolved it and
    how.
    """

    kind = models.CharField(_("problem"), max_length=20, choices=LinkProblemKind.choices)
    # What the problem is about: the deal id (its order field changed) or the order id (several deals).
    key = models.CharField(_("subject"), max_length=32)
    state = models.CharField(
        _("state"),
        max_length=8,
        choices=LinkProblemState.choices,
        default=LinkProblemState.OPEN,
        db_index=True,
    )
    order_id = models.CharField(_("order"), max_length=32, db_index=True)
    deal_id = models.CharField(
        _("deal"), max_length=32, blank=True, help_text=_("The linked deal, when there is a link.")
    )
    # The deals that name the order (several deals), or the order the deal names now (deal order changed).
    deals = models.JSONField(_("deals"), default=list, blank=True)
    named_order = models.CharField(_("order named by the deal"), max_length=32, blank=True)
    link = models.ForeignKey(
        Link,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="problems",
        verbose_name=_("link"),
    )
    first_seen = models.DateTimeField(_("first seen"), auto_now_add=True)
    last_seen = models.DateTimeField(_("last seen"), auto_now=True)
    times_seen = models.PositiveIntegerField(_("times seen"), default=1)
    resolved_at = models.DateTimeField(_("resolved"), null=True, blank=True)
    resolved_by = models.CharField(_("resolved by"), max_length=150, blank=True)
    # How it was resolved, as a reason code with parameters (statussync.reasons).
    resolution = models.JSONField(_("resolution"), null=True, blank=True)

    class Meta:
        verbose_name = _("link problem")
        verbose_name_plural = _("link problems")
        ordering = ["-last_seen", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "key"], condition=Q(state="open"), name="one_open_problem_per_subject"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.key}"


class BulkAction(models.TextChoices):
    RESYNC = "resync", _("Resync")
    TAKE_SHOP = "take_shop", _("Take the shop's value")
    TAKE_CRM = "take_crm", _("Take the CRM's value")
    REDISCOVER = "rediscover", _("Rediscover the link")
    # On dead letters: the operation's `link_ids` then hold job ids.
    REPLAY = "replay", _("Replay failed work")
    DISCARD = "discard", _("Discard failed work")


class BulkState(models.TextChoices):
    QUEUED = "queued", _("Waiting to start")
    RUNNING = "running", _("Running")
    DONE = "done", _("Done")
    FAILED = "failed", _("Failed")


class BulkOperation(models.Model):
    """An admin action on more links than one request should touch, worked through in the background.

    A django-q2 task takes `CHUNK` links at a time, each chunk its own short transaction, and records how far
    it got (`done`), so the progress page can show it and a task that stops is resumed where it stopped.
    """

    action = models.CharField(_("action"), max_length=12, choices=BulkAction.choices)
    state = models.CharField(_("state"), max_length=8, choices=BulkState.choices, default=BulkState.QUEUED)
    # The links chosen when the manager confirmed, so later changes to the list do not change the selection.
    link_ids = models.JSONField(_("links"), default=list)
    total = models.PositiveIntegerField(_("links in all"), default=0)
    done = models.PositiveIntegerField(_("done"), default=0)
    skipped = models.PositiveIntegerField(
        _("skipped"), default=0, help_text=_("Links closed in the meantime.")
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("started by"),
    )
    created_at = models.DateTimeField(_("started"), auto_now_add=True)
    # The last progress: the sweeper resumes an operation that made none for a while.
    updated_at = models.DateTimeField(_("last progress"), auto_now=True)
    started_at = models.DateTimeField(_("started working"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)
    last_error = models.TextField(_("last error"), blank=True)
    # The task working on it holds it like a job (statussync/leases.py): one task at a time, and a task whose
    # lease ran out keeps no chunk it handles after that.
    claim_token = models.CharField(_("claim token"), max_length=32, blank=True)
    lease_until = models.DateTimeField(_("leased until"), null=True, blank=True)

    class Meta:
        verbose_name = _("background operation")
        verbose_name_plural = _("background operations")
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.get_action_display()} · {self.done}/{self.total}"

    @property
    def on_dead_letters(self) -> bool:
        """A replay or discard of failed jobs, rather than an action on links."""
        return self.action in (BulkAction.REPLAY, BulkAction.DISCARD)


# --- What `bitrix doctor` found (statussync/doctor/) --------------------------------------------------------


class PortalQuirks(models.Model):
    """The undocumented behaviours doctor probed on one portal, so the sync can adapt: read them through
    `statussync.doctor.portal_quirks_get` (names and values in docs/bitrix.md "Undocumented behaviours")."""

    portal = models.CharField(_("portal"), max_length=3, choices=Side.choices, unique=True)
    # quirk name -> what the portal did; a name is absent until probed.
    values = models.JSONField(_("behaviours"), default=dict, blank=True)
    probed_at = models.DateTimeField(_("probed"), auto_now=True)

    class Meta:
        verbose_name = _("portal behaviour")
        verbose_name_plural = _("portal behaviours")

    def __str__(self) -> str:
        return self.portal


class DoctorReport(models.Model):
    """A `bitrix doctor` report as codes and parameters (rendered in the reader's language); the dashboard
    shows the newest."""

    created_at = models.DateTimeField(_("checked"), auto_now_add=True, db_index=True)
    verdict = models.CharField(_("verdict"), max_length=8)
    report = models.JSONField(_("report"), default=dict)

    class Meta:
        verbose_name = _("portal check")
        verbose_name_plural = _("portal checks")
        permissions = [("run_doctor", _("Can check the portals again"))]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.verdict}"
