from django.contrib import admin
from django.urls import include, path

from statussync.api.metrics import metrics_view

urlpatterns = [
    path("api/", include("statussync.urls")),
    path("metrics", metrics_view, name="metrics"),
    # bxsync's own admin pages (the dashboard, the header search), before the admin site's catch-alls.
    path("admin/", include("statussync.admin.urls")),
    path("admin/", admin.site.urls),
    # set_language: the admin header's language switcher posts here.
    path("i18n/", include("django.conf.urls.i18n")),
]

# JSON under /api/, Django's pages elsewhere (see statussync/api/errors.py).
handler400 = "statussync.api.errors.bad_request"
handler404 = "statussync.api.errors.page_not_found"
handler500 = "statussync.api.errors.server_error"
