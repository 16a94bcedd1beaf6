"""The boxed-Bitrix forwarder module (contrib/bitrix/bxsync.forwarder), run by php-cli on a stub kernel
against a live bxsync: what a shop or CRM portal sends, what bxsync stores, and what happens when bxsync is
down or hangs."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from statussync.models import InboundEvent, Job, JobKind, Side
from tests.support.webhooks import CMS_TOKEN, CRM_TOKEN

REPO = Path(__file__).resolve().parents[2]
MODULES_ROOT = REPO / "contrib" / "bitrix"
MODULE = MODULES_ROOT / "bxsync.forwarder"
HIT = Path(__file__).parent / "kernel" / "hit.php"
PHP_FILES = sorted([*MODULES_ROOT.rglob("*.php"), *Path(__file__).parent.rglob("*.php")])

pytestmark = pytest.mark.usefixtures("portals")
# The tests that POST to the live bxsync: its server thread reads what the test thread committed.
live = pytest.mark.django_db(transaction=True)

SHOP_HANDLERS = {
    ("sale", "OnSaleOrderSaved"),
    ("sale", "OnSalePaymentEntitySaved"),
    ("sale", "OnSaleOrderPaid"),
    ("sale", "OnSaleOrderDeleted"),
}
CRM_HANDLERS = {
    ("crm", "OnAfterCrmDealAdd"),
    ("crm", "OnAfterCrmDealUpdate"),
    ("crm", "OnAfterCrmDealDelete"),
}
# What a hit may cost the customer or manager: the handlers only queue.
HANDLER_BUDGET = 0.05


def php_binary() -> str:
    """php-cli, or a failed (never skipped) test saying how to get it."""
    php = shutil.which("php")
    if php is None:
        pytest.fail(
            "php is not installed, and the forwarder module's tests run it: "
            "apt-get install php-cli (CI installs it through .ci/system-packages)"
        )
    return php


@dataclass
class Hit:
    """What one PHP process reported: each step with its duration."""

    steps: list[dict[str, Any]]

    def seconds(self, step: str) -> float:
        """Total time spent in steps named `step`."""
        return sum(s["seconds"] for s in self.steps if s["do"] == step)

    def get(self, step: str) -> dict[str, Any]:
        """The last step named `step`."""
        return [s for s in self.steps if s["do"] == step][-1]


class Portal:
    """A boxed Bitrix kernel (stubbed) with the forwarder module in its modules folder. Its b_module,
    b_module_to_module, b_option and event log live in a JSON file, so each hit is a fresh PHP process."""

    def __init__(self, php: str, folder: Path, modules: tuple[str, ...]) -> None:
        self.php = php
        self.state_file = folder / "kernel-state.json"
        self.state_file.write_text(json.dumps({"modules": ["main", *modules]}))

    def hit(self, *steps: dict[str, Any], env: dict[str, str] | None = None) -> Hit:
        """Run `steps` in one PHP process; fails the test on any PHP error, warning or notice."""
        proc = subprocess.run(
            [self.php, str(HIT), json.dumps(list(steps))],
            capture_output=True,
            text=True,
            timeout=30,
            env={
                **os.environ,
                "BXSYNC_KERNEL_STATE": str(self.state_file),
                "BXSYNC_MODULES_ROOT": str(MODULES_ROOT),
                **(env or {}),
            },
            check=False,
        )
        assert proc.returncode == 0, f"php failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        return Hit(steps=json.loads(proc.stdout.splitlines()[0])["steps"])

    def state(self) -> dict[str, Any]:
        """The kernel's tables as the module left them."""
        return json.loads(self.state_file.read_text())

    def handlers(self) -> set[tuple[str, str]]:
        """(module, event) of every handler this module registered."""
        return {
            (row["FROM_MODULE_ID"], row["MESSAGE_ID"])
            for row in self.state()["handlers"]
            if row["TO_MODULE_ID"] == "bxsync.forwarder"
        }

    def log(self) -> str:
        """Everything the module wrote to the kernel's event log."""
        return "\n".join(entry["DESCRIPTION"] for entry in self.state()["eventlog"])

    def install(self, base_url: str, **options: str) -> None:
        """Install the module and fill in its options page."""
        self.hit({"do": "install"}, {"do": "configure", "options": {"base_url": base_url, **options}})


@pytest.fixture
def make_portal(tmp_path):
    """A factory of portals, each with its own kernel state, for the modules present on it."""
    php = php_binary()
    count = iter(range(100))

    def make(*modules: str) -> Portal:
        folder = tmp_path / f"portal{next(count)}"
        folder.mkdir()
        return Portal(php, folder, modules)

    return make


@pytest.fixture
def bxsync(live_server) -> str:
    """The base URL of a live bxsync, configured with the test tokens (the `portals` fixture)."""
    return live_server.url


@pytest.fixture
def down_url() -> Iterator[str]:
    """An address where nothing listens: a bound, never-listening socket refuses connections."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
def hanging_url() -> Iterator[str]:
    """An address that accepts connections and never answers (the kernel completes the handshake)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def shop(make_portal, url: str, **options: str) -> Portal:
    """A shop portal (module sale) with the module installed and the shop's token."""
    portal = make_portal("sale")
    # The live bxsync and the fault servers of these tests listen on http://127.0.0.1: allowed on purpose.
    portal.install(url, **{"cms_token": CMS_TOKEN, "domain": "shop.example.ru", "allow_http": "Y", **options})
    return portal


def crm(make_portal, url: str, **options: str) -> Portal:
    """An on-premises Bitrix24 (crm, and a sale module of its own) with the module and the CRM's token."""
    portal = make_portal("crm", "sale")
    portal.install(url, **{"crm_token": CRM_TOKEN, "allow_http": "Y", **options})
    return portal


def stored() -> list[tuple[str, str, str]]:
    """(side, event, id) of every event bxsync stored, in arrival order."""
    return list(InboundEvent.objects.order_by("id").values_list("side", "event", "entity_id"))


# --- install and uninstall ---


@pytest.mark.parametrize(
    ("modules", "expected"),
    [
        (("sale",), SHOP_HANDLERS),
        (("crm",), CRM_HANDLERS),
        (("sale", "crm"), SHOP_HANDLERS | CRM_HANDLERS),
        ((), set()),
    ],
    ids=["shop", "crm", "shop-and-crm-on-one-kernel", "neither"],
)
def test_it_registers_handlers_for_the_modules_present(make_portal, modules, expected):
    portal = make_portal(*modules)

    portal.hit({"do": "install"})

    assert portal.handlers() == expected
    assert "bxsync.forwarder" in portal.state()["modules"]


def test_it_removes_exactly_its_own_handlers_and_settings_on_uninstall(make_portal):
    portal = make_portal("sale", "crm")
    state = portal.state()
    someone_elses = {
        "FROM_MODULE_ID": "sale",
        "MESSAGE_ID": "OnSaleOrderSaved",
        "TO_MODULE_ID": "main",
        "TO_CLASS": "Vendor\\Other",
        "TO_METHOD": "onOrderSaved",
        "SORT": 100,
        "VERSION": 2,
    }
    state["handlers"] = [someone_elses]
    portal.state_file.write_text(json.dumps(state))
    portal.install("https://bxsync.example.com", cms_token=CMS_TOKEN, crm_token=CRM_TOKEN)

    portal.hit({"do": "uninstall"})

    after = portal.state()
    assert after["handlers"] == [someone_elses]
    assert "bxsync.forwarder" not in after["modules"]
    assert "bxsync.forwarder" not in after["options"], "the tokens must not outlive the module"


def test_it_wires_a_module_installed_after_it_when_asked_to_register_again(make_portal):
    portal = make_portal("sale")
    portal.hit({"do": "install"})
    state = portal.state()
    state["modules"].append("crm")  # the CRM is installed on this kernel later
    portal.state_file.write_text(json.dumps(state))

    page = portal.hit({"do": "options_page", "post": {"register_handlers": "Y"}}).get("options_page")["html"]
    portal.hit({"do": "options_page", "post": {"register_handlers": "Y"}})  # twice: still one of each

    assert portal.handlers() == SHOP_HANDLERS | CRM_HANDLERS
    assert len(portal.state()["handlers"]) == len(SHOP_HANDLERS | CRM_HANDLERS)
    assert "Handlers registered for: sale, crm." in page


# --- what bxsync receives ---


@live
@pytest.mark.parametrize(
    ("step", "events", "jobs"),
    [
        (
            {"do": "save_order", "order": 300},
            [("cms", "ONSALEORDERSAVED", "300")],
            {(JobKind.ORDER, "300", "default")},
        ),
        (
            {"do": "save_payment", "payment": 512},
            [("cms", "ONPAYMENTENTITYSAVED", "512")],
            {(JobKind.PAYMENT, "512", "payments")},
        ),
        (
            {"do": "pay_order", "order": 300, "payments": [512, 513]},
            [("cms", "ONPAYMENTENTITYSAVED", "512"), ("cms", "ONPAYMENTENTITYSAVED", "513")],
            {(JobKind.PAYMENT, "512", "payments"), (JobKind.PAYMENT, "513", "payments")},
        ),
        (
            {"do": "delete_order", "order": 300},
            [("cms", "ONSALEORDERSAVED", "300"), ("cms", "ONORDERDELETED", "300")],
            {(JobKind.ORDER, "300", "default")},
        ),
    ],
    ids=["order-saved", "payment-saved", "order-paid", "order-deleted"],
)
def test_it_forwards_each_shop_event_to_the_shop_endpoint(make_portal, bxsync, step, events, jobs):
    portal = shop(make_portal, bxsync)

    portal.hit(step, {"do": "end_hit"})

    assert sorted(stored()) == sorted(events)
    assert set(Job.objects.values_list("kind", "entity_id", "queue")) == jobs
    assert portal.log() == ""


@live
@pytest.mark.parametrize(
    ("step", "event", "deal"),
    [
        ({"do": "add_deal", "deal": 7410}, "ONCRMDEALADD", "7410"),
        ({"do": "update_deal", "deal": 7405}, "ONCRMDEALUPDATE", "7405"),
        ({"do": "delete_deal", "deal": 7405}, "ONCRMDEALDELETE", "7405"),
    ],
    ids=["deal-added", "deal-updated", "deal-deleted"],
)
def test_it_forwards_each_crm_event_to_the_crm_endpoint(make_portal, bxsync, step, event, deal):
    portal = crm(make_portal, bxsync)

    portal.hit(step, {"do": "end_hit"})

    assert stored() == [(Side.CRM, event, deal)]
    assert list(Job.objects.values_list("kind", "entity_id")) == [(JobKind.DEAL, deal)]
    assert portal.log() == ""


@live
def test_it_sends_exactly_the_outgoing_webhook_format(make_portal, bxsync):
    portal = shop(make_portal, bxsync)

    portal.hit({"do": "save_order", "order": 300}, {"do": "end_hit"})

    payload = InboundEvent.objects.get().payload
    assert payload["event"] == "ONSALEORDERSAVED"
    assert payload["data"] == {"FIELDS": {"ID": "300", "XML_ID": "bx_300", "ACTION": "save"}}
    assert payload["ts"].isdigit()
    assert abs(int(payload["ts"]) - time.time()) < 60
    assert payload["auth"] == {"domain": "shop.example.ru"}, "bxsync drops the token before storing"


@live
def test_it_forwards_both_sides_from_one_kernel_each_with_its_own_token(make_portal, bxsync):
    portal = make_portal("sale", "crm")
    portal.install(bxsync, cms_token=CMS_TOKEN, crm_token=CRM_TOKEN, allow_http="Y")

    portal.hit(
        {"do": "save_order", "order": 300},
        {"do": "save_payment", "payment": 512},
        {"do": "update_deal", "deal": 7405},
        {"do": "end_hit"},
    )

    assert sorted(stored()) == [
        (Side.CMS, "ONPAYMENTENTITYSAVED", "512"),
        (Side.CMS, "ONSALEORDERSAVED", "300"),
        (Side.CRM, "ONCRMDEALUPDATE", "7405"),
    ]
    assert portal.log() == ""


@live
def test_it_sends_one_post_for_repeated_saves_of_one_entity_in_one_hit(make_portal, bxsync):
    portal = shop(make_portal, bxsync)

    portal.hit(
        {"do": "save_order", "order": 300},
        {"do": "save_payment", "payment": 512},
        {"do": "pay_order", "order": 300, "payments": [512]},
        {"do": "save_order", "order": 300},
        {"do": "save_order", "order": 300},
        {"do": "end_hit"},
    )

    assert sorted(stored()) == [
        (Side.CMS, "ONPAYMENTENTITYSAVED", "512"),
        (Side.CMS, "ONSALEORDERSAVED", "300"),
    ]
    # A second POST within the same second would have been counted as a duplicate of the first.
    assert list(InboundEvent.objects.values_list("duplicates", flat=True)) == [0, 0]
    assert set(Job.objects.values_list("entity_id", "events_coalesced")) == {("300", 1), ("512", 1)}


@live
def test_it_forwards_nothing_for_a_side_whose_token_is_not_set(make_portal, bxsync):
    # An on-premises Bitrix24 has its own sale module (its built-in store): those orders are not the shop's.
    portal = crm(make_portal, bxsync)

    portal.hit({"do": "save_order", "order": 9001}, {"do": "update_deal", "deal": 7405}, {"do": "end_hit"})

    assert stored() == [(Side.CRM, "ONCRMDEALUPDATE", "7405")]
    assert portal.log() == ""


@live
def test_it_still_sends_on_a_kernel_without_background_jobs(make_portal, bxsync):
    portal = shop(make_portal, bxsync)

    # No end_hit: an old kernel, or a cron script that never reaches Application::terminate().
    portal.hit({"do": "save_order", "order": 300}, env={"BXSYNC_STUB_OLD_KERNEL": "1"})

    assert stored() == [(Side.CMS, "ONSALEORDERSAVED", "300")]


@live
def test_it_never_breaks_a_save_when_reading_the_entity_fails(make_portal, bxsync):
    portal = shop(make_portal, bxsync)

    # The hit would exit non-zero if the handler let the exception into the sale module's save.
    portal.hit({"do": "save_broken_order"}, {"do": "save_order", "order": 301}, {"do": "end_hit"})

    assert stored() == [(Side.CMS, "ONSALEORDERSAVED", "301")]
    assert "OnSaleOrderSaved not forwarded: RuntimeException: order storage unavailable" in portal.log()


@live
def test_it_is_refused_with_a_wrong_token_and_bxsync_stores_nothing(make_portal, bxsync):
    portal = shop(make_portal, bxsync, cms_token="forgedforgedforgedforgedforged00")

    portal.hit({"do": "save_order", "order": 300}, {"do": "save_payment", "payment": 512}, {"do": "end_hit"})

    assert InboundEvent.objects.count() == 0
    assert Job.objects.count() == 0
    log = portal.log()
    assert "bxsync answered 403 to ONPAYMENTENTITYSAVED 512, ONSALEORDERSAVED 300" in log
    assert "forgedforged" not in log, "the token must never be logged"


# --- bxsync down or hanging: checkout never waits ---


def test_it_returns_at_once_and_logs_when_bxsync_is_down(make_portal, down_url):
    portal = shop(make_portal, down_url, connect_timeout="1", total_timeout="2")

    hit = portal.hit(
        {"do": "save_order", "order": 300},
        {"do": "save_payment", "payment": 512},
        {"do": "end_hit"},
    )

    assert hit.seconds("save_order") + hit.seconds("save_payment") < HANDLER_BUDGET
    sending = hit.seconds("end_hit")
    print(f"bxsync down: sending after the response {sending:.4f} s")
    assert sending < 1.0, "a refused connection must not wait for the connect timeout"
    log = portal.log()
    assert "not sent to bxsync yet: ONPAYMENTENTITYSAVED 512, ONSALEORDERSAVED 300" in log
    assert "Connection refused" in log
    assert "2 event(s) wait in the outbox and the agent retries them every minute" in log
    assert CMS_TOKEN not in log


def test_it_gives_up_after_one_total_timeout_when_bxsync_hangs(make_portal, hanging_url):
    portal = shop(make_portal, hanging_url, connect_timeout="0.2", total_timeout="0.5")

    hit = portal.hit(
        {"do": "save_order", "order": 300},
        {"do": "save_order", "order": 301},
        {"do": "save_payment", "payment": 512},
        {"do": "end_hit"},
    )

    handlers = hit.seconds("save_order") + hit.seconds("save_payment")
    sending = hit.seconds("end_hit")
    print(f"hanging bxsync: handlers {handlers:.4f} s, sending after the response {sending:.3f} s")
    assert handlers < HANDLER_BUDGET, "the customer's save must not wait on bxsync"
    # Three events, one total timeout (0.5 s) for the whole hit: one per event would take 1.5 s.
    assert 0.45 <= sending < 2 * 0.5, "bxsync hanging must cost a hit one timeout, not one per event"
    log = portal.log()
    assert "no answer from" in log
    assert "ONPAYMENTENTITYSAVED 512, ONSALEORDERSAVED 300, ONSALEORDERSAVED 301" in log


def test_it_times_out_after_1_s_to_connect_and_2_s_in_all_by_default(make_portal):
    portal = make_portal("sale")
    portal.hit({"do": "install"})

    settings_step = portal.hit({"do": "settings"}).get("settings")

    assert (settings_step["connect_timeout"], settings_step["total_timeout"]) == (1.0, 2.0)


# --- the options page ---


def test_it_saves_the_settings_and_never_shows_a_saved_token(make_portal):
    portal = make_portal("sale", "crm")
    portal.hit({"do": "install"})

    saved = portal.hit(
        {
            "do": "options_page",
            "post": {
                "save": "Y",
                "base_url": "https://bxsync.example.com",
                "cms_token": CMS_TOKEN,
                "crm_token": CRM_TOKEN,
                "connect_timeout": "0,5",
                "total_timeout": "1.5",
            },
        }
    ).get("options_page")["html"]
    page = portal.hit({"do": "options_page"}).get("options_page")["html"]

    options = portal.state()["options"]["bxsync.forwarder"]
    assert (options["base_url"], options["cms_token"], options["crm_token"]) == (
        "https://bxsync.example.com",
        CMS_TOKEN,
        CRM_TOKEN,
    )
    assert (options["connect_timeout"], options["total_timeout"]) == ("0.5", "1.5")
    assert "Settings saved." in saved
    assert CMS_TOKEN not in saved + page
    assert CRM_TOKEN not in saved + page
    assert page.count("saved (type a new one to replace it)") == 2


def test_it_keeps_a_saved_token_when_the_field_is_left_empty(make_portal):
    portal = make_portal("sale")
    portal.install("https://bxsync.example.com", cms_token=CMS_TOKEN)

    portal.hit({"do": "options_page", "post": {"save": "Y", "base_url": "https://bxsync.example.com"}})

    assert portal.state()["options"]["bxsync.forwarder"]["cms_token"] == CMS_TOKEN


def test_it_refuses_a_timeout_out_of_range_on_the_options_page(make_portal):
    portal = make_portal("sale")
    portal.hit({"do": "install"})

    page = portal.hit(
        {"do": "options_page", "post": {"save": "Y", "base_url": "ftp://x", "total_timeout": "60"}}
    ).get("options_page")["html"]

    assert "The bxsync address must start with http:// or https://." in page
    assert "The total timeout must be a number of seconds from 0.1 to 10." in page


@live
@pytest.mark.parametrize(
    ("token", "message"),
    [
        (CMS_TOKEN, "bxsync accepted the shop token"),
        ("forgedforgedforgedforgedforged00", "bxsync refused the shop token (403)"),
    ],
    ids=["right-token", "wrong-token"],
)
def test_it_checks_the_connection_from_the_options_page(make_portal, bxsync, token, message):
    portal = shop(make_portal, bxsync, cms_token=token)

    page = portal.hit({"do": "options_page", "post": {"check": "cms"}}).get("options_page")["html"]

    assert message in page
    assert Job.objects.count() == 0, "a connection check is not a change to sync"


def test_it_shows_the_options_page_in_russian(make_portal):
    portal = make_portal("sale")
    portal.hit({"do": "install"})

    page = portal.hit({"do": "options_page"}, env={"BXSYNC_STUB_LANGUAGE": "ru"}).get("options_page")["html"]

    assert "Адрес bxsync" in page
    assert "модуль не установлен на этом портале" in page  # crm is absent here


# --- the PHP itself ---


def test_it_passes_php_lint_on_every_php_file():
    php = php_binary()
    failures = []
    for path in PHP_FILES:
        proc = subprocess.run([php, "-l", str(path)], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            failures.append(proc.stdout + proc.stderr)

    assert len(PHP_FILES) > 20
    assert not failures, "\n".join(failures)


# Syntax and functions that PHP 7.4 (what many boxed installs still run) does not have.
PHP8_ONLY = {
    r"\bmatch\s*\(": "match expressions (PHP 8.0)",
    r"\?->": "the nullsafe operator (PHP 8.0)",
    r"#\[": "attributes (PHP 8.0)",
    r"\b(str_contains|str_starts_with|str_ends_with|get_debug_type|array_is_list)\s*\(": "a PHP 8 function",
    r"\benum\s+\w+": "enums (PHP 8.1)",
    r"\breadonly\b": "readonly properties (PHP 8.1)",
    r"function\s+\w+\s*\([^)]*\b(public|private|protected)\s+": "constructor promotion (PHP 8.0)",
    r"\):\s*(mixed|never|static)\b": "a PHP 8 return type",
    r"\b\w+\s*\|\s*\w+\s+\$\w+\s*[,)=]": "a union type (PHP 8.0)",
}


def test_it_uses_nothing_newer_than_php_7_4():
    found = []
    for path in sorted(MODULE.rglob("*.php")):
        source = re.sub(r"/\*.*?\*/|//[^\n]*", "", path.read_text(), flags=re.S)
        found += [
            f"{path.relative_to(MODULE)}: {what}"
            for pattern, what in PHP8_ONLY.items()
            if re.search(pattern, source)
        ]

    assert not found, "\n".join(found)


def test_it_has_every_message_in_russian_and_english():
    for en in (MODULE / "lang" / "en").rglob("*.php"):
        ru = MODULE / "lang" / "ru" / en.relative_to(MODULE / "lang" / "en")
        keys = [set(re.findall(r"\$MESS\['(\w+)'\]", f.read_text())) for f in (en, ru)]
        assert keys[0] == keys[1], f"{en.name}: only in one language: {keys[0] ^ keys[1]}"
    used = set(re.findall(r"'(BXSYNC_FORWARDER_[A-Z_]*[A-Z])'", (MODULE / "options.php").read_text()))
    defined = set(re.findall(r"\$MESS\['(\w+)'\]", (MODULE / "lang" / "en" / "options.php").read_text()))
    assert used <= defined, f"options.php uses undefined messages: {used - defined}"
