from django.urls import path
from drf_spectacular.views import SpectacularAPIView

from statussync.api import apis

urlpatterns = [
    path("bitrix/cms/", apis.CmsEventReceiveApi.as_view(), name="bitrix-cms"),
    path("bitrix/crm/", apis.CrmEventReceiveApi.as_view(), name="bitrix-crm"),
    path("bitrix/app/install/<str:portal>/", apis.AppInstallApi.as_view(), name="bitrix-app-install"),
    path("bitrix/app/wake/<str:portal>/", apis.AppWakeApi.as_view(), name="bitrix-app-wake"),
    path("health/", apis.HealthApi.as_view(), name="health"),
    path("health/live/", apis.HealthLiveApi.as_view(), name="health-live"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
]
