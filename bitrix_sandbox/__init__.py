"""Emulated Bitrix portals: an online shop (``sale``) and a Bitrix24 CRM, plus simulated traffic.

The sandbox bxsync's demo, tests and benchmarks run against; production code never imports it. Standard
library HTTP, ``requests`` for outgoing events and ``phpquery`` for PHP bracket queries; no Django, so it
also runs standalone: ``python -m bitrix_sandbox serve --help``. Each module cites the Bitrix documentation
for the behaviour it emulates and says where it chooses for itself: ``[docs/bitrix.md "Lists"]`` names a
section of the repository's Bitrix notes, which link each fact to its page of the official REST docs.

Python API::

    sb = Sandbox(SandboxConfig(seed=1)).start()
    sb.shop_url, sb.shop_token, sb.crm_url, sb.crm_token, sb.env()
    sb.configure_events(shop_handler=url, crm_handler=url)
    sb.seed(20)                                  # [(order_id, deal_id), ...]
    sb.shop.pay_order(order_id); sb.crm.move_deal(deal_id, "WON", user_id=7)
    sb.set_faults("crm", drop_rate=0.1); sb.counters(); sb.wait_events_idle()
    sb.set_faults("crm", reply_lost_once=True)   # every write applied, its reply lost once
    sb.pause_events(); sb.resume_events(); sb.rest_writes(applied=True)
    sb.stop()

The HTTP control API (``/_sandbox/...``) is documented in ``bitrix_sandbox.server``.
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
