"""Authentication of Bitrix's outgoing-webhook events by the portal's application token.

Bitrix signs nothing: each outgoing webhook sends its `application_token` in the body
(`auth[application_token]`), and the docs' advice is to refuse any event whose token differs from the one
the portal showed us (https://apidocs.bitrix24.ru/local-integrations/local-webhooks.html,
https://apidocs.bitrix24.ru/api-reference/events/safe-event-handlers.html). So the token lives in the parsed
body, and authentication runs after the parser.
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass

from django.conf import settings
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from bxsync_project.proxy import client_ip
from statussync.models import ConnectedPortal, Side

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Portal:
    """The authenticated sender of an event: one of the two portals (DRF's `request.user`)."""

    side: str
    is_authenticated: bool = True


class ApplicationTokenAuthentication(BaseAuthentication):
    """Accepts an event whose `auth[application_token]` equals the portal's configured token.

    Compared in constant time. An unset token on our side refuses everything rather than accepting all.
    """

    side: str = ""
    setting: str = ""

    def authenticate(self, request: Request) -> tuple[Portal, None]:
        expected = getattr(settings, self.setting, "") or ""
        data = request.data  # parsed already: the view's `initial` parses before it authenticates
        auth = data.get("auth") if isinstance(data, dict) else None
        given = auth.get("application_token") if isinstance(auth, dict) else None
        if not expected and not _application_token(self.side):
            logger.warning("refused a %s event: %s is not set", self.side, self.setting)
            raise AuthenticationFailed("wrong or missing application_token")
        if not isinstance(given, str) or not (
            _same(given, expected) or _same(given, _application_token(self.side))
        ):
            # Never the token given (it may be a real token of another portal), nor the one expected.
            logger.warning(
                "refused a %s event: %s application_token, from %s",
                self.side,
                "no" if given is None else "a wrong",
                client_ip(request) or "?",
            )
            raise AuthenticationFailed("wrong or missing application_token")
        return Portal(side=self.side), None

    def authenticate_header(self, request: Request) -> None:
        # No WWW-Authenticate challenge, so DRF answers 403 rather than 401 (the contract's status).
        return None


def _same(given: str, expected: str) -> bool:
    return bool(expected) and hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode())


def _application_token(side: str) -> str:
    """The token of the portal's application (push mode: its events carry it), if it sent us one."""
    token = ConnectedPortal.objects.filter(portal=side).values_list("application_token", flat=True).first()
    return token or ""


class CmsApplicationTokenAuthentication(ApplicationTokenAuthentication):
    """The shop portal's outgoing webhook (`BXSYNC_CMS_APP_TOKEN`)."""

    side = Side.CMS
    setting = "BXSYNC_CMS_APP_TOKEN"


class CrmApplicationTokenAuthentication(ApplicationTokenAuthentication):
    """The CRM portal's outgoing webhook (`BXSYNC_CRM_APP_TOKEN`)."""

    side = Side.CRM
    setting = "BXSYNC_CRM_APP_TOKEN"
