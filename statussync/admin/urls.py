"""bxsync's own admin pages beside the models' ones: the dashboard and the header search.

Included under `admin/` before the admin site's own URLs (bxsync_project/urls.py); each view goes through
`admin_view`, so it needs a staff login like every admin page, and checks its own permission.
"""

from django.contrib import admin
from django.urls import path

from .dashboard import dashboard_view
from .doctor import doctor_again_view
from .find import find_view

urlpatterns = [
    path("dashboard/", admin.site.admin_view(dashboard_view), name="bxsync-dashboard"),
    path("doctor/", admin.site.admin_view(doctor_again_view), name="bxsync-doctor"),
    path("find/", admin.site.admin_view(find_view), name="bxsync-find"),
]
