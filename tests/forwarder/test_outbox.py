"""The forwarder's durable outbox: events wait in a table while bxsync is down or busy and an agent sends
them, in order, once it is back; the table is bounded; the address refuses http:// unless allowed and never
shows its credentials."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator

import pytest

from statussync.models import InboundEvent
from tests.forwarder.test_forwarder import (  # fixtures and helpers of the forwarder's tests
    HANDLER_BUDGET,
    bxsync,
    down_url,
    live,
    make_portal,
    shop,
    stored,
)
from tests.support.webhooks import CMS_TOKEN

pytestmark = pytest.mark.usefixtures("portals")
__all__ = ["bxsync", "down_url", "make_portal"]

OUTBOX = "b_bxsync_forwarder_outbox"
AGENT = "\\Bxsync\\Forwarder\\Outbox::agent();"


def outbox(portal) -> list[tuple[str, int, int]]:
    """(event, entity id, attempts) of every row waiting, oldest first."""
    rows = portal.state()["tables"][OUTBOX]["rows"]
    rows = list(rows.values()) if isinstance(rows, dict) else rows  # PHP writes an empty table as []
    return [(r["EVENT"], r["ENTITY_ID"], r["ATTEMPTS"]) for r in sorted(rows, key=lambda r: r["ID"])]


@pytest.fixture
def busy_url() -> Iterator[tuple[str, list[int]]]:
    """An address answering every request 503 (bxsync restarting behind its proxy), and the request count."""
    requests: list[int] = []
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(65536)
                requests.append(1)
                conn.sendall(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                )

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", requests
    stop.set()
    thread.join(2)
    sock.close()


def test_it_creates_the_outbox_and_its_agent_on_install_and_drops_them_on_uninstall(make_portal):
    portal = make_portal("sale")

    portal.hit({"do": "install"}, {"do": "install"})  # installed again: still one agent

    state = portal.state()
    assert not state["tables"][OUTBOX]["rows"]
    assert [(a["NAME"], a["MODULE_ID"], a["AGENT_INTERVAL"]) for a in state["agents"]] == [
        (AGENT, "bxsync.forwarder", 60)
    ]
    portal.hit({"do": "uninstall"})
    state = portal.state()
    assert OUTBOX not in state["tables"]
    assert state["agents"] == []


@live
def test_it_keeps_the_events_while_bxsync_is_down_and_the_agent_sends_them_in_order_once_it_is_back(
    make_portal, down_url, bxsync
):
    portal = shop(make_portal, down_url)

    hit = portal.hit(
        {"do": "save_order", "order": 300},
        {"do": "save_payment", "payment": 512},
        {"do": "save_order", "order": 301},
        {"do": "end_hit"},
    )

    assert hit.seconds("save_order") + hit.seconds("save_payment") < HANDLER_BUDGET
    assert [(event, entity) for event, entity, _ in outbox(portal)] == [
        ("ONSALEORDERSAVED", 300),
        ("ONPAYMENTENTITYSAVED", 512),
        ("ONSALEORDERSAVED", 301),
    ]
    assert stored() == []
    portal.hit({"do": "configure", "options": {"base_url": bxsync}}, {"do": "run_agents"})

    assert stored() == [
        ("cms", "ONSALEORDERSAVED", "300"),
        ("cms", "ONPAYMENTENTITYSAVED", "512"),
        ("cms", "ONSALEORDERSAVED", "301"),
    ]
    assert outbox(portal) == []
    assert [a["NAME"] for a in portal.state()["agents"]] == [AGENT], "the agent runs again next minute"


def test_it_keeps_an_event_bxsync_answers_503_to_and_retries_it(make_portal, busy_url):
    url, requests = busy_url
    portal = shop(make_portal, url)

    portal.hit({"do": "save_order", "order": 300}, {"do": "save_order", "order": 301}, {"do": "end_hit"})
    portal.hit({"do": "run_agents"})

    # In order: the first event waits, and so does the one after it, untried.
    assert outbox(portal) == [("ONSALEORDERSAVED", 300, 2), ("ONSALEORDERSAVED", 301, 0)]
    assert len(requests) == 2
    assert "bxsync answered 503" in portal.log()


def test_it_drops_the_oldest_events_with_a_warning_when_the_outbox_is_full(make_portal, down_url):
    portal = shop(make_portal, down_url, outbox_max="2")

    portal.hit(
        {"do": "save_order", "order": 300},
        {"do": "save_order", "order": 301},
        {"do": "save_order", "order": 302},
        {"do": "end_hit"},
    )

    assert [entity for _, entity, _ in outbox(portal)] == [301, 302]
    assert "the bxsync outbox is full (2 events): dropped the oldest 1 (ONSALEORDERSAVED 300)" in portal.log()


@live
def test_it_still_sends_a_hits_events_once_when_the_outbox_table_fails(make_portal, bxsync):
    portal = shop(make_portal, bxsync)

    hit = portal.hit({"do": "save_order", "order": 300}, {"do": "end_hit"}, env={"BXSYNC_STUB_DB_DOWN": "1"})

    assert hit.seconds("save_order") < HANDLER_BUDGET
    assert stored() == [("cms", "ONSALEORDERSAVED", "300")]
    assert "could not store ONSALEORDERSAVED 300 in the bxsync outbox" in portal.log()


def test_it_shows_the_backlog_on_the_options_page(make_portal, down_url):
    portal = shop(make_portal, down_url)
    portal.hit({"do": "save_order", "order": 300}, {"do": "save_payment", "payment": 512}, {"do": "end_hit"})

    page = portal.hit({"do": "options_page"}).get("options_page")["html"]
    empty = shop(make_portal, down_url).hit({"do": "options_page"}).get("options_page")["html"]

    assert "2 event(s), the oldest queued at" in page
    assert "none: bxsync has everything" in empty


def test_it_refuses_an_http_address_on_the_options_page_unless_allowed(make_portal):
    portal = make_portal("sale")
    portal.hit({"do": "install"})

    refused = portal.hit(
        {"do": "options_page", "post": {"save": "Y", "base_url": "http://bxsync.example.com"}}
    ).get("options_page")["html"]
    assert "The bxsync address starts with http://" in refused
    assert portal.state()["options"]["bxsync.forwarder"].get("base_url", "") == ""

    portal.hit(
        {
            "do": "options_page",
            "post": {"save": "Y", "base_url": "http://bxsync.example.com", "allow_http": "Y"},
        }
    )
    assert portal.state()["options"]["bxsync.forwarder"]["base_url"] == "http://bxsync.example.com"


@live
def test_it_sends_nothing_to_an_http_address_that_was_not_allowed(make_portal, bxsync):
    portal = shop(make_portal, bxsync, allow_http="")

    portal.hit({"do": "save_order", "order": 300}, {"do": "end_hit"})

    assert InboundEvent.objects.count() == 0
    assert [entity for _, entity, _ in outbox(portal)] == [300]  # sent once the address is fixed
    assert "starts with http://, which sends the application token unencrypted" in portal.log()


@live
def test_it_never_shows_the_credentials_of_the_address(make_portal, bxsync):
    with_credentials = bxsync.replace("http://", "http://forwarder:s3cretPassw0rd@")
    portal = shop(make_portal, with_credentials)

    page = portal.hit({"do": "options_page"}).get("options_page")["html"]
    checked = portal.hit({"do": "options_page", "post": {"check": "cms"}}).get("options_page")["html"]
    # Saving the page as shown keeps the stored address, credentials included.
    portal.hit(
        {
            "do": "options_page",
            "post": {"save": "Y", "base_url": bxsync.replace("http://", "http://***@"), "allow_http": "Y"},
        }
    )

    assert "bxsync accepted the shop token (http://***@" in checked
    assert "s3cretPassw0rd" not in page + checked
    assert portal.state()["options"]["bxsync.forwarder"]["base_url"] == with_credentials
    assert CMS_TOKEN not in json.dumps(portal.state()["tables"]), "the outbox holds ids, never the token"
