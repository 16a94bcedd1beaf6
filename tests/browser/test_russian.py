"""The admin in Russian, in a real browser that asks for it (Accept-Language ru, as a Russian Windows or
macOS sends): the links list, a link's timeline, the mapping editor, the dashboard, the audit log and the
dead letters show no English words where people read — headings, columns, filters, actions, a reason — and
English readers still get English. Writes docs/screenshots/russian.png."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, Page

from statussync.mapping.catalog_refresh import catalog_refresh
from statussync.models import Pipeline
from tests.admin.story import link_story
from tests.browser.conftest import log_in, screenshot, user_make
from tests.sync.conftest import sandbox, sb

__all__ = ["sandbox", "sb"]

pytestmark = pytest.mark.django_db(transaction=True)

# What may stay Latin in a Russian page: the product's and the portals' names, technical terms a Bitrix
# user reads in Latin letters in Bitrix itself, and whatever the portals or people wrote (codes are in
# capitals and are left alone by the check).
LATIN_ALLOWED = {"bxsync", "ops", "english", "json", "csv", "rest", "api", "unix", "utc", "msk"}
_LATIN_WORD = re.compile(r"\b[A-Za-z][a-z]{2,}\b")


@pytest.fixture
def reader(browser: Browser) -> Iterator[Callable[[str], Page]]:
    """Opens a browser page whose requests ask for a language first; closed after the test, so no request
    of it is still being served when the live server's database goes away."""
    contexts: list[BrowserContext] = []

    def open_page(language: str) -> Page:
        context = browser.new_context(viewport={"width": 1400, "height": 900}, locale=language)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(15_000)
        return page

    yield open_page
    for context in contexts:
        context.close()


def english_words(page: Page) -> list[str]:
    """The Latin words people read on the page (header, breadcrumbs, content, filters), except the allowed
    names and codes."""
    text = " ".join(page.locator(selector).inner_text() for selector in ("#header", "#content"))
    text = re.sub(r"statusmap (import|export)|manage\.py bitrix doctor", "", text)  # the commands' names
    return sorted({w for w in _LATIN_WORD.findall(text) if w.lower() not in LATIN_ALLOWED})


def test_it_shows_support_and_managers_the_admin_in_russian(reader, live_server, sb):
    story = link_story(sb)
    catalog_refresh()
    user_make("ops", superuser=True)
    page = reader("ru-RU")
    log_in(page, live_server, "ops")
    pages: dict[str, list[str]] = {}

    # The links list: its heading, columns, filters and actions.
    page.goto(f"{live_server.url}/admin/statussync/link/")
    assert page.locator("#content h1").inner_text() == "Связи"
    headers = page.locator("#result_list thead th").all_inner_texts()
    # The admin's stylesheet capitalises the headers.
    assert {"заказ", "сделка", "в магазине", "в crm", "согласовано", "состояние"} <= {
        h.strip().lower() for h in headers
    }
    actions = page.locator("select[name=action] option").all_inner_texts()
    assert "Пересинхронизировать: перечитать заказ и сделку" in actions
    assert "Откат заблокирован" in page.locator("#result_list").inner_text()
    pages["links"] = english_words(page)

    # The action's confirmation page.
    page.locator("input.action-select").first.check()
    page.select_option("select[name=action]", "resync")
    page.locator("button[name=index]").first.click()
    page.wait_for_selector(".bxsync-confirmation")
    assert "Синхронизировать заново 1 связь?" in page.locator("#content").inner_text()
    pages["confirmation"] = english_words(page)

    # A link's timeline: what happened and why, in words.
    page.goto(f"{live_server.url}/admin/statussync/link/{story.link.id}/change/")
    summary = page.locator(".bx-summary").inner_text()
    assert "Откат заблокирован" in summary
    assert "сделку перевели на стадию" in summary
    assert "что вернуло бы оплаченный заказ в статус" in summary
    assert "заказ оплачен: сделка" in page.locator('.bx-step[data-outcome="payment_applied"]').inner_text()
    pages["timeline"] = english_words(page)
    screenshot(page, "russian")

    # The mapping editor.
    pipeline = Pipeline.objects.get(pipeline_id=0)
    page.goto(f"{live_server.url}/admin/statussync/pipeline/{pipeline.pk}/change/")
    assert "Стадия оплаты" in page.locator("#content").inner_text() or "стадия оплаты" in page.content()
    pages["mapping editor"] = english_words(page)

    # The dashboard, the audit log and the dead letters.
    page.goto(f"{live_server.url}/admin/dashboard/")
    assert "Связи, требующие внимания" in page.locator("#content").inner_text()
    pages["dashboard"] = english_words(page)
    page.goto(f"{live_server.url}/admin/statussync/auditentry/")
    assert page.locator("#content h1").inner_text() == "Журнал: каждое решение bxsync"
    pages["audit"] = english_words(page)
    page.goto(f"{live_server.url}/admin/statussync/deadletter/")
    pages["dead letters"] = english_words(page)
    page.goto(f"{live_server.url}/admin/")
    pages["index"] = english_words(page)
    # Every other list of the app, and the mapping's own pages.
    for name in (
        "pipeline",
        "mappingchange",
        "linkproblem",
        "unmappedvalue",
        "job",
        "inboundevent",
        "bulkoperation",
        "catalogstatus",
        "catalogstage",
    ):
        page.goto(f"{live_server.url}/admin/statussync/{name}/")
        pages[name] = english_words(page)
    page.goto(f"{live_server.url}/admin/statussync/pipeline/import/")
    pages["mapping import"] = english_words(page)

    assert {name: words for name, words in pages.items() if words} == {}


def test_it_still_shows_the_admin_in_english_to_an_english_reader(reader, live_server, sb):
    story = link_story(sb)
    user_make("ops", superuser=True)
    page = reader("en-US")
    log_in(page, live_server, "ops")

    page.goto(f"{live_server.url}/admin/statussync/link/{story.link.id}/change/")

    summary = page.locator(".bx-summary").inner_text()
    assert "Blocked: paid order sent back" in summary
    assert "deal moved to NEW, which would put paid order back to N" in summary
    assert not re.search(
        "[а-яА-Я]", page.locator(".breadcrumbs").inner_text() + page.locator("#content h1").inner_text()
    )


def test_it_switches_the_language_from_the_header(reader, live_server, sb):
    user_make("ops", superuser=True)
    page = reader("en-US")
    log_in(page, live_server, "ops")

    page.goto(f"{live_server.url}/admin/statussync/link/")
    with page.expect_navigation():
        page.select_option("#language-select", "ru")  # the switcher submits itself

    assert page.locator("#content h1").inner_text() == "Связи"
