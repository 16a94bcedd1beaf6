from django.urls import path

from statussync import intake

urlpatterns = [
    path("bitrix/cms/", intake.CmsEventReceiveApi.as_view(), name="bitrix-cms"),
    path("bitrix/crm/", intake.CrmEventReceiveApi.as_view(), name="bitrix-crm"),
    path("health/", intake.HealthApi.as_view(), name="health"),
]
