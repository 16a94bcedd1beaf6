"""Emulated Bitrix portals for bxsync: an online shop (``sale``) and a Bitrix24 CRM, plus simulated traffic.

Pure standard library HTTP (and ``requests`` for outgoing events); no Django, so it also runs standalone:
``python -m statussync.sandbox serve --help``. Behaviour follows the team's reference/bitrix-api.md; each
module cites the facts it emulates.

Python API::

    sb = Sandbox(SandboxConfig(seed=1)).start()
    sb.shop_url, sb.shop_token, sb.crm_url, sb.crm_token, sb.env()
    sb.configure_events(shop_handler=url, crm_handler=url)
    sb.seed(20)                                  # [(order_id, deal_id), ...]
    sb.shop.pay_order(order_id); sb.crm.move_deal(deal_id, "WON", user_id=7)
    sb.set_faults("crm", drop_rate=0.1); sb.counters(); sb.wait_events_idle()
    sb.stop()

The HTTP control API (``/_sandbox/...``) is documented in ``statussync.sandbox.server``.
"""

from .crm import CrmConfig, CrmPortal
from .faults import FaultSettings
from .harness import Sandbox, SandboxConfig
from .rest import DEFAULT_HUMAN_USER, DEFAULT_WEBHOOK_USER, Portal, PortalConfig, RestError
from .shop import ShopConfig, ShopPortal
from .traffic import TrafficConfig, TrafficGenerator

__all__ = [
    "DEFAULT_HUMAN_USER",
    "DEFAULT_WEBHOOK_USER",
    "CrmConfig",
    "CrmPortal",
    "FaultSettings",
    "Portal",
    "PortalConfig",
    "RestError",
    "Sandbox",
    "SandboxConfig",
    "ShopConfig",
    "ShopPortal",
    "TrafficConfig",
    "TrafficGenerator",
]
