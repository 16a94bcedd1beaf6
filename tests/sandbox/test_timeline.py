"""``crm.timeline.comment.add`` / ``.list``: comments on a deal's timeline, stored per deal, no deal event.

[docs/bitrix.md "Timeline comments"]
"""

from __future__ import annotations

import requests

from bitrix_sandbox import Sandbox
from phpquery import http_build_query


def _comment(deal_id: int, text: str = "bxsync: the order is paid, the stage stays") -> dict:
    return {"fields": {"ENTITY_ID": deal_id, "ENTITY_TYPE": "deal", "COMMENT": text}}


def test_it_adds_a_comment_and_answers_its_id(sandbox: Sandbox, rest) -> None:
    _, deal_id = sandbox.seed(1, pipeline_share=0.0)[0]
    first = rest.ok(sandbox.crm, "crm.timeline.comment.add", _comment(deal_id))["result"]
    second = rest.ok(sandbox.crm, "crm.timeline.comment.add", _comment(deal_id, "again"))["result"]
    assert isinstance(first, int)
    assert second == first + 1
    [row, _] = sandbox.crm.deal_comments(deal_id)
    assert row["ID"] == str(first)
    assert (row["ENTITY_ID"], row["ENTITY_TYPE"], row["AUTHOR_ID"]) == (str(deal_id), "deal", "1")
    assert row["COMMENT"] == "bxsync: the order is paid, the stage stays"


def test_it_fires_no_deal_event_and_leaves_the_deal_as_it_was(sandbox: Sandbox, receiver, rest) -> None:
    _, deal_id = sandbox.seed(1, pipeline_share=0.0)[0]
    before = sandbox.crm.get_deal(deal_id)
    sandbox.advance_clock(5)
    rest.ok(sandbox.crm, "crm.timeline.comment.add", _comment(deal_id))
    assert sandbox.wait_events_idle(5)
    assert sandbox.crm.get_deal(deal_id) == before  # DATE_MODIFY included
    assert receiver.events() == []  # the comment's own event is not subscribed by default
    events = sandbox.crm.counters()["events"]
    assert events["emitted"] == {"ONCRMTIMELINECOMMENTADD": 1}
    assert sandbox.rest_writes() == 0  # a comment is not a write of the deal
    assert sandbox.crm.counters()["timeline_comments"] == {"rest": 1}


def test_it_sends_the_comment_event_with_data_id_when_subscribed(sandbox: Sandbox, receiver, rest) -> None:
    _, deal_id = sandbox.seed(1, pipeline_share=0.0)[0]
    sandbox.crm.configure_events(subscribed_events=["ONCRMTIMELINECOMMENTADD", "ONCRMDEALUPDATE"])
    comment_id = rest.ok(sandbox.crm, "crm.timeline.comment.add", _comment(deal_id))["result"]
    assert sandbox.wait_events_idle(5)
    [event] = receiver.events()
    assert event.event == "ONCRMTIMELINECOMMENTADD"
    # [docs/bitrix.md "Timeline comments"] data.ID, not data.FIELDS.ID
    assert event.fields["data[ID]"] == str(comment_id)


def test_it_shows_comments_through_the_control_api(sandbox: Sandbox, rest) -> None:
    _, deal_id = sandbox.seed(1, pipeline_share=0.0)[0]
    rest.ok(sandbox.crm, "crm.timeline.comment.add", _comment(deal_id))
    listed = requests.get(f"{sandbox.crm.base_url}/_sandbox/comments/{deal_id}", timeout=5).json()
    assert [c["COMMENT"] for c in listed] == ["bxsync: the order is paid, the stage stays"]
    state = requests.get(f"{sandbox.crm.base_url}/_sandbox/state", timeout=5).json()
    assert [c["ID"] for c in state["comments"][str(deal_id)]] == [listed[0]["ID"]]
    assert requests.get(f"{sandbox.crm.base_url}/_sandbox/comments/99999", timeout=5).status_code == 404


def test_it_lists_a_deals_comments(sandbox: Sandbox, rest) -> None:
    (_, first), (_, second) = sandbox.seed(2, pipeline_share=0.0, deals_without_order=0)
    for text in ("one", "two"):
        rest.ok(sandbox.crm, "crm.timeline.comment.add", _comment(first, text))
    rest.ok(sandbox.crm, "crm.timeline.comment.add", _comment(second, "other deal"))
    body = rest.ok(
        sandbox.crm,
        "crm.timeline.comment.list",
        {"filter": {"ENTITY_ID": first, "ENTITY_TYPE": "deal"}, "order": {"ID": "DESC"}},
    )
    assert [c["COMMENT"] for c in body["result"]] == ["two", "one"]
    assert body["total"] == 2
    assert set(body["result"][0]) == {
        "ID",
        "ENTITY_ID",
        "ENTITY_TYPE",
        "CREATED",
        "COMMENT",
        "AUTHOR_ID",
        "FILES",
    }
    missing_filter = rest(sandbox.crm, "crm.timeline.comment.list", {"filter": {"ENTITY_TYPE": "deal"}})
    assert missing_filter.status_code == 400


def test_it_refuses_what_the_docs_refuse(sandbox: Sandbox, rest) -> None:
    _, deal_id = sandbox.seed(1, pipeline_share=0.0)[0]
    # Since crm 23.100.0 only a lower-case "fields" is accepted.
    upper = rest(sandbox.crm, "crm.timeline.comment.add", {"FIELDS": _comment(deal_id)["fields"]})
    assert (upper.status_code, upper.json()["error"]) == (400, 100)
    no_comment = {"fields": {"ENTITY_ID": deal_id, "ENTITY_TYPE": "deal"}}
    assert rest(sandbox.crm, "crm.timeline.comment.add", no_comment).json()["error"] == 100
    empty = rest(sandbox.crm, "crm.timeline.comment.add", _comment(deal_id, "  "))
    assert empty.json()["error"] == "INVALID_ARG_VALUE"
    gone = rest(sandbox.crm, "crm.timeline.comment.add", _comment(99999))
    assert (gone.status_code, gone.json()["error"]) == (400, "OWNER_NOT_FOUND")
    assert sandbox.crm.deal_comments(deal_id) == []


def test_it_adds_comments_inside_a_batch_and_drops_them_with_the_deal(sandbox: Sandbox, rest) -> None:
    pairs = sandbox.seed(2, pipeline_share=0.0, orders_without_deal=0, deals_without_order=0)
    cmd = {
        f"c{deal_id}": "crm.timeline.comment.add?" + http_build_query(_comment(deal_id, f"deal {deal_id}"))
        for _, deal_id in pairs
    }
    body = rest.ok(sandbox.crm, "batch", {"cmd": cmd})["result"]
    assert body["result_error"] == []
    assert all(isinstance(v, int) for v in body["result"].values())
    sandbox.crm.delete_deal(pairs[0][1])
    assert sandbox.crm.state()["comments"].keys() == {str(pairs[1][1])}
