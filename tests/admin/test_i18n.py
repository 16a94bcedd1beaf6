"""The admin in the reader's language: LocaleMiddleware, the switcher, LANGUAGE_CODE and TIME_ZONE from the
environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from statussync.mapping.store import mapping_import
from tests.admin.mapping.support import PIPELINES_URL
from tests.support.catalogs import catalog_make
from tests.support.mappings import DESIGN_EXAMPLE

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.django_db


def test_it_speaks_russian_to_a_russian_browser(manager_client):
    catalog_make()
    mapping_import(data=DESIGN_EXAMPLE)

    page = manager_client.get(PIPELINES_URL, headers={"accept-language": "ru"}).content.decode()

    assert "Обновить названия из порталов" in page
    assert "Сопоставления воронок" in page
    assert "Общая (0)" in page


def test_it_switches_language_from_the_header_and_remembers_it(manager_client):
    assert 'id="language-switcher"' in manager_client.get(PIPELINES_URL).content.decode()

    response = manager_client.post("/i18n/setlang/", {"language": "ru", "next": PIPELINES_URL})

    assert response.status_code == 302
    assert "Выгрузить файл сопоставления" in manager_client.get(PIPELINES_URL).content.decode()


def test_it_takes_the_language_and_time_zone_from_the_environment():
    env = {**os.environ, "LANGUAGE_CODE": "ru", "TIME_ZONE": "Europe/Moscow"}
    shown = subprocess.run(
        [
            sys.executable,
            str(REPO / "manage.py"),
            "shell",
            "-c",
            "from django.conf import settings; from django.utils.translation import gettext as _; "
            "print(settings.LANGUAGE_CODE, settings.TIME_ZONE, _('Status sync'))",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=60,
        check=True,
    ).stdout

    assert shown.splitlines()[-1] == "ru Europe/Moscow Синхронизация статусов"
