"""The browser harness itself: Debian's chromium, a live bxsync, the admin's login."""

from __future__ import annotations

import pytest

from tests.browser.conftest import log_in, user_make

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_logs_in_to_the_admin_in_debians_chromium(page, live_server):
    user_make("ops", superuser=True)

    log_in(page, live_server, "ops")

    assert "Site administration" in page.content()
