"""``Sandbox``: both emulated portals, seeding and traffic behind one in-process API."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

from .crm import CrmConfig, CrmPortal
from .rest import Portal
from .server import ControlError
from .shop import ShopConfig, ShopPortal
from .traffic import TrafficConfig, TrafficGenerator

PRICES = (990.0, 1490.0, 2500.0, 4990.0, 7490.0, 12000.0)


@dataclass
class SandboxConfig:
    """Both portals' settings plus the seed making codes, tokens, faults, seeding and traffic reproducible."""

    shop: ShopConfig = field(default_factory=ShopConfig)
    crm: CrmConfig = field(default_factory=CrmConfig)
    seed: int = 0
    # One Bitrix24 with both roles: the CRM's webhook answered on the shop's address, from one leaky bucket
    # (the shop's rate and burst) [docs/bitrix.md "Limits"].
    one_portal: bool = False


class Sandbox:
    """Two emulated Bitrix portals (``shop`` and ``crm``) with controls for tests, demo and benchmarks.

    >>> with Sandbox().start() as sb:          # doctest: +SKIP
    ...     sb.configure_events(shop_handler="http://127.0.0.1:8000/api/bitrix/cms/",
    ...                         crm_handler="http://127.0.0.1:8000/api/bitrix/crm/")
    ...     pairs = sb.seed(20)
    ...     sb.shop.pay_order(pairs[0][0])
    ...     sb.wait_events_idle()
    """

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        self.shop = ShopPortal(self.config.shop, seed=self.config.seed)
        self.crm = CrmPortal(self.config.crm, seed=self.config.seed)
        if self.config.one_portal:
            self.shop.serve_also(self.crm)
        self.traffic: TrafficGenerator | None = None
        self._seed_rng = random.Random(f"{self.config.seed}:seed")
        self.running = False

    # -- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> Sandbox:
        """Start both HTTP servers and event threads; returns self."""
        self.shop.start(self)
        self.crm.start(self)
        self.running = True
        return self

    def stop(self) -> None:
        """Stop traffic, HTTP servers and event delivery."""
        self.stop_traffic()
        self.shop.stop()
        self.crm.stop()
        self.running = False

    def __enter__(self) -> Sandbox:
        if not self.running:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- addresses -------------------------------------------------------------------------------------------

    @property
    def portals(self) -> tuple[ShopPortal, CrmPortal]:
        """``(shop, crm)``."""
        return self.shop, self.crm

    def portal(self, name: str) -> Portal:
        """``"shop"``/``"cms"`` or ``"crm"``."""
        if name in ("shop", "cms"):
            return self.shop
        if name == "crm":
            return self.crm
        raise ValueError(f"unknown portal {name!r}")

    def _selected(self, portal: str) -> list[Portal]:
        return [self.shop, self.crm] if portal in ("both", "all") else [self.portal(portal)]

    @property
    def shop_url(self) -> str:
        """Shop inbound-webhook base URL (``BXSYNC_CMS_REST_URL``)."""
        return self.shop.webhook_url

    @property
    def crm_url(self) -> str:
        """CRM inbound-webhook base URL (``BXSYNC_CRM_REST_URL``)."""
        return self.crm.webhook_url

    @property
    def shop_token(self) -> str:
        """Shop outgoing-webhook ``application_token`` (``BXSYNC_CMS_APP_TOKEN``)."""
        return self.shop.application_token

    @property
    def crm_token(self) -> str:
        """CRM outgoing-webhook ``application_token`` (``BXSYNC_CRM_APP_TOKEN``)."""
        return self.crm.application_token

    def env(self) -> dict[str, str]:
        """The bxsync environment variables pointing at this sandbox."""
        return {
            "BXSYNC_CMS_REST_URL": self.shop_url,
            "BXSYNC_CMS_APP_TOKEN": self.shop_token,
            "BXSYNC_CRM_REST_URL": self.crm_url,
            "BXSYNC_CRM_APP_TOKEN": self.crm_token,
            "BXSYNC_DEAL_ORDER_FIELD": self.crm.order_field,
        }

    # -- control ---------------------------------------------------------------------------------------------

    def configure_events(
        self,
        shop_handler: str | None = None,
        crm_handler: str | None = None,
        shop_token: str | None = None,
        crm_token: str | None = None,
    ) -> None:
        """Point the portals' outgoing webhooks at handler URLs (and optionally set their tokens)."""
        self.shop.configure_events(handler_url=shop_handler, application_token=shop_token)
        self.crm.configure_events(handler_url=crm_handler, application_token=crm_token)

    def set_faults(self, portal: str = "both", **faults: Any) -> dict[str, Any]:
        """Set fault switches on ``"shop"``, ``"crm"`` or ``"both"``; returns the new settings per portal."""
        return {p.kind: p.set_faults(**faults) for p in self._selected(portal)}

    def clear_faults(self, portal: str = "both") -> None:
        """Turn all faults off."""
        for p in self._selected(portal):
            p.clear_faults()

    def set_limits(self, portal: str = "both", **limits: Any) -> None:
        """``rate``, ``burst``, ``operating_limit``, ``operating_limits`` on one or both portals."""
        for p in self._selected(portal):
            p.set_limits(**limits)

    def set_account(self, portal: str = "both", **changes: Any) -> dict[str, Any]:
        """Set ``account.AccountSettings`` switches on ``"shop"``, ``"crm"`` or ``"both"``."""
        return {p.kind: p.set_account(**changes) for p in self._selected(portal)}

    def counters(self) -> dict[str, Any]:
        """``{"shop": {...}, "crm": {...}}`` (see ``Portal.counters``)."""
        return {"shop": self.shop.counters(), "crm": self.crm.counters()}

    def reset_counters(self) -> None:
        """Zero both portals' counters and event logs."""
        self.shop.reset_counters()
        self.crm.reset_counters()

    def pause_events(self, portal: str = "both") -> None:
        """Hold every outgoing event of ``"shop"``, ``"crm"`` or ``"both"`` (a stalled Bitrix queue)."""
        for p in self._selected(portal):
            p.pause_events()

    def resume_events(self, portal: str = "both") -> None:
        """Deliver the held events, late, and carry on as usual."""
        for p in self._selected(portal):
            p.resume_events()

    def rest_writes(self, *, applied: bool = False) -> int:
        """REST write calls on both portals (in bxsync's tests: bxsync's own writes).

        ``applied=True`` counts only those that changed something: a write of the value already there, or of
        another pipeline's stage (``crm.deal.update`` answers ``true`` and changes nothing), is requested,
        not applied.
        """
        key = "writes_applied" if applied else "writes"
        return sum(sum(c.get(key, {}).get("rest", {}).values()) for c in self.counters().values())

    def wait_events_idle(self, timeout: float = 10.0) -> bool:
        """Wait until both portals delivered (or failed) every queued event; False on timeout."""
        deadline = time.monotonic() + timeout
        for portal in (self.shop, self.crm):
            if not portal.wait_events_idle(max(0.0, deadline - time.monotonic())):
                return False
        return True

    def advance_clock(self, seconds: float) -> None:
        """Move both portals' clocks forward by ``seconds`` (stays moved until ``reset``)."""
        for portal in (self.shop, self.crm):
            portal.clock.advance(seconds)

    def reset(self) -> None:
        """Delete all entities, zero counters, clear faults and refill the rate-limit buckets."""
        for portal in (self.shop, self.crm):
            portal.clock.offset = type(portal.clock.offset)()
            portal.reset_state()
            portal.reset_counters()
            portal.clear_faults()
            portal.resume_events()
            portal.bucket.reset()
            portal.operating.reset()
            portal.address_restore()
            portal.account.reset()
            portal.app.reset()

    # -- seeding ---------------------------------------------------------------------------------------------

    def seed(
        self,
        n_orders: int = 20,
        *,
        pipeline_share: float = 0.25,
        pipelines: list[int] | None = None,
        orders_without_deal: int = 3,
        deals_without_order: int = 3,
        emit_events: bool = False,
    ) -> list[tuple[int, int]]:
        """Create ``n_orders`` orders (status N, one unpaid payment) each with a linked deal, plus strays.

        About ``pipeline_share`` of the deals go to the extra pipelines (``pipelines``, default all but 0), at
        their first stage; the rest start at NEW in pipeline 0. Seeding is silent (no events) unless
        ``emit_events`` and its writes are counted under ``writes.seed``.
        Returns ``[(order_id, deal_id), ...]``.
        """
        rng = self._seed_rng
        extra = pipelines if pipelines is not None else [c for c in self.crm.pipelines() if c != 0]
        human = self.crm.config.human_user_id
        pairs: list[tuple[int, int]] = []
        for _ in range(n_orders):
            price = rng.choice(PRICES)
            order_id = self.shop.add_order(
                {"price": price, "userId": rng.randint(100, 999)}, actor=None, source="seed", emit=emit_events
            )
            category = rng.choice(extra) if extra and rng.random() < pipeline_share else 0
            deal_id = self.crm.add_deal(
                {
                    "TITLE": f"Заказ №{order_id}",
                    "CATEGORY_ID": category,
                    "OPPORTUNITY": price,
                    self.crm.order_field: order_id,
                },
                actor=human,
                source="seed",
                emit=emit_events,
            )
            pairs.append((order_id, deal_id))
        for _ in range(orders_without_deal):
            self.shop.add_order(
                {"price": rng.choice(PRICES), "userId": rng.randint(100, 999)},
                actor=None,
                source="seed",
                emit=emit_events,
            )
        for i in range(deals_without_order):
            self.crm.add_deal(
                {"TITLE": f"Сделка без заказа {i + 1}", "OPPORTUNITY": rng.choice(PRICES)},
                actor=human,
                source="seed",
                emit=emit_events,
            )
        return pairs

    # -- traffic ---------------------------------------------------------------------------------------------

    def start_traffic(self, rate: float = 1.0, **options: Any) -> TrafficGenerator:
        """Start (or retune) the traffic generator at ``rate`` actions/s; options go to ``TrafficConfig``."""
        if self.traffic is not None and self.traffic.running:
            self.traffic.set_rate(rate)
            return self.traffic
        config = TrafficConfig(rate=rate, seed=options.pop("seed", self.config.seed), **options)
        self.traffic = TrafficGenerator(self.shop, self.crm, config)
        return self.traffic.start()

    def stop_traffic(self) -> dict[str, Any]:
        """Stop the traffic generator; returns its stats (empty when it never ran)."""
        if self.traffic is None:
            return {}
        return self.traffic.stop()

    # -- control API (sandbox-wide actions) ------------------------------------------------------------------

    def control(self, verb: str, action: str, args: dict[str, Any]) -> Any:
        """Sandbox-wide control actions: ``seed``, ``reset``, ``traffic``, ``idle`` (see ``server``)."""
        if action == "seed":
            n_orders = int(args.pop("n_orders", 20))
            return {"pairs": self.seed(n_orders, **args)}
        if action == "reset":
            self.reset()
            return {"ok": True}
        if action == "idle":
            timeout = float(args.get("timeout", 10.0))
            return {"idle": self.wait_events_idle(timeout)}
        if action == "traffic":
            if verb == "POST":
                what = args.pop("action", "start")
                if what == "stop":
                    return self.stop_traffic()
                self.start_traffic(float(args.pop("rate", 1.0)), **args)
            return self.traffic.stats() if self.traffic else {"running": False}
        raise ControlError(404, f"unknown control action {action!r}")
