"""What the django-q2 broker holds on either leg: the ORM broker's rows (embedded), a Redis list (scaled)."""

from __future__ import annotations

from typing import Any

from django_q.brokers import get_broker
from django_q.models import OrmQ
from django_q.signing import SignedPackage


def queued_tasks() -> list[dict[str, Any]]:
    """The tasks waiting for the default workers, oldest first, each as django-q2's task dict (func, args)."""
    broker = get_broker()
    if broker.__class__.__name__ == "ORM":
        return [message.task for message in OrmQ.objects.filter(key=broker.list_key).order_by("id")]
    return [SignedPackage.loads(m) for m in broker.connection.lrange(broker.list_key, 0, -1)]
