"""What Django's error pages and error e-mails may show."""

import re

from django.views.debug import SafeExceptionReporterFilter


class SecretSettingsFilter(SafeExceptionReporterFilter):
    """Django's defaults, plus the settings that carry credentials in their value: the inbound-webhook URLs
    (the path holds the webhook's secret code) and connection URLs."""

    hidden_settings = re.compile(
        "API|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|REST_URL|DATABASE_URL|REDIS_URL|Q_CLUSTER",
        flags=re.I,
    )
