"""Connecting a portal as a Bitrix24 application: a Sync manager enters the portal's address and the local
application's client id and secret and presses Connect; the browser signs in on the portal and comes back
here with a code (settings/oauth/index.md), so bxsync need not be reachable from the internet. The page
then shows the state, the bound events and the queue. Support sees it and changes nothing. The secret and
the tokens are never shown: the secret's field is write-only, the tokens have no field at all."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import models
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.text import capfirst
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from statussync.admin.base import NamedListAdmin
from statussync.applications import (
    application_connect_finish,
    application_connect_start,
    application_disconnect,
)
from statussync.bitrix import BitrixError
from statussync.intake_pull import offline_queue_depth
from statussync.models import ConnectedPortal, ConnectionState, IntakeMode


def _https_by_default(field: models.Field, **kwargs: Any) -> forms.Field | None:
    # Bitrix24 is served over HTTPS: an address typed without a scheme means https://.
    if isinstance(field, models.URLField):
        kwargs.setdefault("assume_scheme", "https")
    return field.formfield(**kwargs)


class ConnectedPortalForm(forms.ModelForm):
    client_secret = forms.CharField(
        label=capfirst(gettext_lazy("client secret")),  # as the model's own fields' labels are
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text=gettext_lazy(
            "Kept on the server and never shown again. Leave empty to keep the stored one."
        ),
    )

    class Meta:
        model = ConnectedPortal
        formfield_callback = _https_by_default
        fields = [
            "portal",
            "address",
            "client_id",
            "client_secret",
            "intake_mode",
            "events_url",
            "oauth_server",
        ]
        help_texts = {
            "events_url": gettext_lazy(
                "Where the portal can reach bxsync, e.g. https://bxsync.example.com: push posts the events "
                "there; pull gets a wake-up there when changes wait, and polls without one."
            )
        }

    def clean_client_secret(self) -> str:
        secret = self.cleaned_data.get("client_secret", "")
        if not secret and not (self.instance.pk and self.instance.client_secret):
            raise forms.ValidationError(_("Enter the client secret of the local application."))
        return secret


@admin.register(ConnectedPortal)
class ConnectedPortalAdmin(NamedListAdmin):
    form = ConnectedPortalForm
    change_form_template = "admin/statussync/connectedportal/change_form.html"
    list_display = ["portal", "address", "intake_mode", "state", "state_reason", "events", "queue"]
    readonly_fields = ["state", "state_reason", "state_changed_at", "events", "queue", "last_pull_at"]
    actions = None
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    def get_fieldsets(self, request: HttpRequest, obj: ConnectedPortal | None = None) -> Any:
        keys = (
            None,
            {"fields": ["portal", "address", "client_id", "client_secret", "intake_mode", "events_url"]},
        )
        server = (gettext_lazy("Self-hosted portals"), {"fields": ["oauth_server"], "classes": ["collapse"]})
        if obj is None:
            return [keys, server]
        state = (gettext_lazy("Connection"), {"fields": self.readonly_fields})
        return [state, keys, server]

    def get_readonly_fields(self, request: HttpRequest, obj: ConnectedPortal | None = None) -> list[str]:
        return list(self.readonly_fields) + (["portal"] if obj is not None else [])

    @admin.display(description=gettext_lazy("bound events"))
    def events(self, obj: ConnectedPortal) -> str:
        return ", ".join(obj.bound_events or []) or "—"

    @admin.display(description=gettext_lazy("events waiting"))
    def queue(self, obj: ConnectedPortal) -> str:
        """The offline queue's depth as the portal counts it now (pull mode; a few seconds' cache)."""
        if obj.intake_mode != IntakeMode.PULL or obj.state != ConnectionState.CONNECTED:
            return "—"
        depth = offline_queue_depth(portal=obj.portal)
        if depth is not None:
            return str(depth)
        if obj.queue_depth is None:
            return _("unknown: the portal does not answer")
        return _("%(depth)s when last read; the portal does not answer now") % {"depth": obj.queue_depth}

    def get_urls(self) -> list[Any]:
        view = self.admin_site.admin_view
        return [
            path(
                "connect/done/", view(self.connect_done_view), name="statussync_connectedportal_connect_done"
            ),
            path(
                "<int:pk>/disconnect/",
                view(self.disconnect_view),
                name="statussync_connectedportal_disconnect",
            ),
            *super().get_urls(),
        ]

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        callback = request.build_absolute_uri(reverse("admin:statussync_connectedportal_connect_done"))
        return super().changeform_view(
            request, object_id, form_url, {**(extra_context or {}), "callback_url": callback}
        )

    def save_model(self, request: HttpRequest, obj: ConnectedPortal, form: Any, change: bool) -> None:
        # Through the service: it keeps the keys (an empty secret keeps the stored one) and makes the
        # sign-in URL with a fresh state; the response sends the browser there.
        request._bxsync_sign_in = application_connect_start(
            portal=obj.portal,
            address=obj.address,
            client_id=obj.client_id,
            client_secret=form.cleaned_data.get("client_secret", ""),
            intake_mode=obj.intake_mode,
            oauth_server=obj.oauth_server,
            events_url=obj.events_url,
        )
        obj.pk = ConnectedPortal.objects.only("pk").get(portal=obj.portal).pk

    def response_add(
        self, request: HttpRequest, obj: ConnectedPortal, post_url_continue=None
    ) -> HttpResponse:
        return HttpResponseRedirect(request._bxsync_sign_in)

    def response_change(self, request: HttpRequest, obj: ConnectedPortal) -> HttpResponse:
        return HttpResponseRedirect(request._bxsync_sign_in)

    def connect_done_view(self, request: HttpRequest) -> HttpResponse:
        """The portal sends the browser back here with ``code`` and ``state`` (settings/oauth/index.md)."""
        if not self.has_change_permission(request):
            raise PermissionDenied
        try:
            row = application_connect_finish(
                state=request.GET.get("state", ""), code=request.GET.get("code", "")
            )
        except ConnectedPortal.DoesNotExist:
            messages.error(request, _("This sign-in is unknown or was already used: press Connect again."))
        except BitrixError as error:
            messages.error(request, _("The portal refused the connection: %(error)s") % {"error": error.code})
        else:
            messages.success(
                request,
                _("%(portal)s is connected as an application.") % {"portal": row.get_portal_display()},
            )
        return HttpResponseRedirect(reverse("admin:statussync_connectedportal_changelist"))

    def disconnect_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        if request.method != "POST" or not self.has_change_permission(request):
            raise PermissionDenied
        row = get_object_or_404(ConnectedPortal, pk=pk)
        if row.state == ConnectionState.CONNECTED:
            application_disconnect(
                portal=row.portal,
                reason=_("disconnected by %(user)s") % {"user": request.user.get_username()},
            )
            messages.success(request, _("Disconnected; bxsync's events are unbound."))
        return HttpResponseRedirect(reverse("admin:statussync_connectedportal_change", args=[pk]))
