"""Admin lists over tables of millions of rows: pages that never count.

Django's changelist counts the filtered rows for its paginator (`SELECT COUNT(*)`), and with
`show_full_result_count` the whole table as well. On millions of audit rows each count reads a whole index,
so a page takes seconds while it shows a hundred rows. These pages read one page and one row more instead:
enough to know whether an older page exists. The price is that the list cannot say how many rows match, only
"page 3" with newer and older links (`admin/statussync/<model>/pagination.html`).
"""

from __future__ import annotations

from functools import cached_property

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters, ShowFacets
from django.contrib.admin.views.main import PAGE_VAR, SEARCH_VAR, ChangeList
from django.core.paginator import InvalidPage, Page, Paginator


class NoCountPaginator(Paginator):
    """A paginator for one known page: it reads that page and one more row, and never counts.

    `count` is a lower bound: the rows before this page, this page's, and one more when an older page exists.
    So `num_pages` is this page's number, or one more.
    """

    def __init__(self, object_list, per_page, orphans=0, allow_empty_first_page=True, *, page: int = 1):
        super().__init__(object_list, per_page, orphans=0, allow_empty_first_page=allow_empty_first_page)
        self.page_number = max(page, 1)

    @cached_property
    def _window(self) -> list:
        offset = (self.page_number - 1) * self.per_page
        return list(self.object_list[offset : offset + self.per_page + 1])

    @cached_property
    def count(self) -> int:
        return (self.page_number - 1) * self.per_page + len(self._window)

    @property
    def has_older(self) -> bool:
        """Whether a page after this one exists."""
        return len(self._window) > self.per_page

    def page(self, number) -> Page:
        number = self.validate_number(number)
        if number != self.page_number:
            raise InvalidPage("only the requested page is read")
        return self._get_page(self._window[: self.per_page], number, self)


class NoCountChangeList(ChangeList):
    """A changelist whose results are one page read by `NoCountPaginator`: one query, no count."""

    def get_results(self, request):
        paginator = self.model_admin.get_paginator(request, self.queryset, self.list_per_page)
        try:
            self.result_list = paginator.page(self.page_num).object_list
        except InvalidPage as exc:
            raise IncorrectLookupParameters from exc
        self.paginator = paginator
        self.result_count = paginator.count
        self.full_result_count = None
        self.show_full_result_count = False
        self.show_admin_actions = True
        self.can_show_all = False  # "show all" of millions of rows is never offered
        self.multi_page = paginator.num_pages > 1
        # For the pagination template: newer and older pages instead of numbers.
        previous = self.page_num - 1
        self.newer_query = (
            (
                self.get_query_string(remove=[PAGE_VAR])
                if previous == 1
                else self.get_query_string({PAGE_VAR: previous})
            )
            if previous >= 1
            else ""
        )
        self.older_query = self.get_query_string({PAGE_VAR: self.page_num + 1}) if paginator.has_older else ""
        self.clear_search_query = self.get_query_string(remove=[SEARCH_VAR])


LAST_PAGE = 10**9


class LargeTableAdmin(admin.ModelAdmin):
    """A changelist for a table of millions of rows: no counts (not even facet counts), one page read."""

    paginator = NoCountPaginator
    show_full_result_count = False
    show_facets = ShowFacets.NEVER
    list_max_show_all = 0

    def get_changelist(self, request, **kwargs):
        return NoCountChangeList

    def get_paginator(self, request, queryset, per_page, orphans=0, allow_empty_first_page=True):
        try:
            page = int(request.GET.get(PAGE_VAR, 1))
        except ValueError:
            page = 1
        if not 1 <= page <= LAST_PAGE:
            # Its OFFSET would overflow PostgreSQL's bigint (a 500): a page no list has is page 1 here, and
            # the changelist, asked for another, says the parameters are wrong.
            page = 1
        return self.paginator(queryset, per_page, orphans, allow_empty_first_page, page=page)
