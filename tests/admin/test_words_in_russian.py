"""Words on admin pages in Russian that Django's defaults or the models' codes got wrong: a list's count (a
plural form Django's models do not carry), the titles of a job and of a mapping change, of the lists and of
the third-party apps in the menu."""

from __future__ import annotations

import pytest
from django.utils import timezone, translation

from statussync.models import (
    CatalogPipeline,
    CatalogStage,
    Job,
    JobKind,
    JobState,
    Link,
    MappingChange,
    MappingChangeSource,
)

pytestmark = pytest.mark.django_db


def paginator_of(page: str) -> str:
    start = page.index('<p class="paginator">')
    return " ".join(page[start : page.index("</p>", start)].split())


def test_it_counts_a_lists_rows_in_russian_grammar(admin_client):
    for n in range(5):
        Link.objects.create(
            order_id=str(n),
            deal_id=str(100 + n),
            pipeline_id=0,
            base_order_status="N",
            base_deal_stage="NEW",
            base_at=timezone.now(),
        )

    links = admin_client.get("/admin/statussync/link/", HTTP_ACCEPT_LANGUAGE="ru").content.decode()
    portals = admin_client.get(
        "/admin/statussync/connectedportal/", HTTP_ACCEPT_LANGUAGE="ru"
    ).content.decode()

    # Django wrote "5 связи" and "0 подключённые порталы".
    assert "5 результатов" in paginator_of(links)
    assert "0 результатов" in paginator_of(portals)


def test_it_titles_a_job_and_a_mapping_change_in_words(admin_client):
    job = Job.objects.create(
        kind=JobKind.ORDER, entity_id="1", state=JobState.DONE, not_before=timezone.now()
    )
    change = MappingChange.objects.create(source=MappingChangeSource.COMMAND, before={}, after={})

    with translation.override("ru"):
        assert str(job) == "Заказ изменён: 1 (Готово)"  # was "order 1 (done)"
        assert str(change).endswith(" statusmap import")  # was "… ?": the command has no user
    page = admin_client.get(f"/admin/statussync/job/{job.pk}/change/", HTTP_ACCEPT_LANGUAGE="ru")
    assert "Заказ изменён: 1 (Готово)" in page.content.decode()


def test_it_filters_the_crms_stages_by_pipeline_names(admin_client):
    CatalogPipeline.objects.create(pipeline_id=1, name="Опт", sort=200, refreshed_at=timezone.now())
    for pipeline, code in ((0, "NEW"), (1, "C1:NEW")):
        CatalogStage.objects.create(
            pipeline_id=pipeline, code=code, name="Новая", refreshed_at=timezone.now()
        )

    page = admin_client.get("/admin/statussync/catalogstage/", HTTP_ACCEPT_LANGUAGE="ru").content.decode()
    wholesale = admin_client.get("/admin/statussync/catalogstage/?pipeline_id=1").content.decode()

    assert ">Опт (1)</a></li>" in page  # was a bare "1"
    assert "C1:NEW" in wholesale
    assert ">NEW<" not in wholesale


def test_it_capitalises_the_connect_pages_labels_alike(admin_client):
    response = admin_client.get("/admin/statussync/connectedportal/add/", HTTP_ACCEPT_LANGUAGE="ru")
    page = response.content.decode()

    assert "Код приложения (client_id)" in page
    assert "Ключ приложения (client_secret)" in page  # was "ключ …" under "Код …"


def test_it_titles_each_list_by_what_it_lists(admin_client):
    for path, title in (
        ("/admin/statussync/catalogstage/", "Стадии сделок CRM"),
        ("/admin/statussync/bulkoperation/", "Фоновые операции"),
        ("/admin/statussync/connectedportal/", "Подключённые порталы"),
        ("/admin/statussync/pipeline/", "Сопоставления воронок"),
        ("/admin/statussync/link/", "Связи"),
    ):
        page = admin_client.get(path, HTTP_ACCEPT_LANGUAGE="ru").content.decode()

        # Django said "Выберите стадия сделки CRM для просмотра": a noun left undeclined.
        assert f"<h1>{title}</h1>" in page, path
        assert "Выберите" not in page, path


def test_it_names_the_task_queue_and_the_login_protection_in_the_menu(admin_client):
    page = admin_client.get("/admin/", HTTP_ACCEPT_LANGUAGE="ru").content.decode()

    assert "Очередь задач" in page  # was "Django Q"
    assert "Защита входа" in page  # was "Axes"
    assert "Django Q" not in page


def test_it_opens_the_menu_with_the_sync(admin_client):
    page = admin_client.get("/admin/", HTTP_ACCEPT_LANGUAGE="ru").content.decode()

    # Django sorts the sections by name: "Защита входа" and "Очередь задач" came before the sync.
    sections = [
        page.index(name) for name in ("Синхронизация статусов", "Пользователи и группы", "Очередь задач")
    ]
    assert sections == sorted(sections)
    assert "View site" not in page
    assert "Открыть сайт" not in page
