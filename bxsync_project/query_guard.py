"""A NUL byte in a query string is refused with 400 before any view runs.

No page of bxsync's takes one, and PostgreSQL refuses NUL in text: an admin filter in the address such as
`?action__exact=%00` reached the database and failed there, a 500 where the reader typed nonsense (found by
tests/admin/test_query_fuzz.py on the scaled leg). SQLite accepts it, so only the scaled leg showed it.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest


class NulInQueryMiddleware:
    """Answer 400 to a request whose query string carries a NUL byte in a name or a value."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        # The parsed names and values: %00 decodes to NUL there, and a raw NUL stays one.
        if any(
            "\x00" in name or any("\x00" in value for value in values) for name, values in request.GET.lists()
        ):
            return HttpResponseBadRequest("A NUL byte in the query string.", content_type="text/plain")
        return self.get_response(request)
