from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("api/", include("statussync.urls")),
    path("admin/", admin.site.urls),
]
