"""Simulated human activity on both portals: managers, customers, staff and the odd bulk edit.

Every action is plausible for the current state (only unpaid orders get paid, deals only move forward within
their pipeline, ...), so bxsync sees the kind of event stream a live shop produces. Driven by a seeded RNG;
the exact sequence still depends on what bxsync writes concurrently.
"""

from __future__ import annotations

import logging
import random
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .crm import CrmPortal
from .shop import FINAL_STATUS, ShopPortal

log = logging.getLogger(__name__)


@dataclass
class TrafficConfig:
    """Rate (actions per second), relative action weights, bulk size range and the acting users."""

    rate: float = 1.0
    weights: dict[str, float] = field(
        default_factory=lambda: {
            "advance_deal": 4.0,
            "pay_order": 3.0,
            "change_order_status": 2.0,
            "new_order": 0.7,
            "bulk_move": 0.3,
        }
    )
    bulk_size: tuple[int, int] = (5, 20)
    manager_ids: tuple[int, ...] = (7, 8, 9)
    staff_ids: tuple[int, ...] = (11, 12)
    seed: int | str = 0


class TrafficGenerator:
    """A background thread making random human changes at ``config.rate`` per second until stopped."""

    def __init__(self, shop: ShopPortal, crm: CrmPortal, config: TrafficConfig | None = None) -> None:
        self.shop = shop
        self.crm = crm
        self.config = config or TrafficConfig()
        self.rng = random.Random(f"{self.config.seed}:traffic")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stats: Counter[str] = Counter()
        self._actions = {
            "advance_deal": self.advance_deal,
            "pay_order": self.pay_order,
            "change_order_status": self.change_order_status,
            "new_order": self.new_order,
            "bulk_move": self.bulk_move,
        }

    # -- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> TrafficGenerator:
        """Start the thread (no-op when running)."""
        if self.running:
            return self
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="sandbox-traffic", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> dict[str, Any]:
        """Stop the thread and return the stats."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            self._thread = None
        return self.stats()

    @property
    def running(self) -> bool:
        """True while the thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def set_rate(self, rate: float) -> None:
        """Change the action rate on the fly."""
        self.config.rate = float(rate)

    def stats(self) -> dict[str, Any]:
        """Actions done by name, plus ``skipped`` (nothing plausible to do) and ``errors``."""
        with self._lock:
            return {"running": self.running, "rate": self.config.rate, "actions": dict(self._stats)}

    def _run(self) -> None:
        while not self._stop.is_set():
            self.step()
            self._stop.wait(1.0 / self.config.rate if self.config.rate > 0 else 1.0)

    def step(self) -> str | None:
        """Do one random action now; returns its name, or None when it found nothing plausible to do."""
        names = [n for n, w in self.config.weights.items() if w > 0 and n in self._actions]
        if not names:
            return None
        name = self.rng.choices(names, weights=[self.config.weights[n] for n in names])[0]
        try:
            done = self._actions[name]()
        except (KeyError, ValueError) as exc:
            # The entity changed under us (bxsync or a delete): a human would just retry later.
            log.debug("traffic %s skipped: %s", name, exc)
            done = False
        with self._lock:
            self._stats[name if done else "skipped"] += 1
        return name if done else None

    # -- actions ---------------------------------------------------------------------------------------------

    def _next_stage(self, stage_id: str) -> str | None:
        stage = self.crm.stages[stage_id]
        if stage.semantics is not None:
            return None  # closed deals stay closed
        forward = [
            s for s in self.crm.pipeline_stages(stage.category_id) if self.crm.stages[s].semantics != "F"
        ]
        idx = forward.index(stage_id)
        return forward[idx + 1] if idx + 1 < len(forward) else None

    def advance_deal(self) -> bool:
        """A manager moves an open deal to the next stage (sometimes to a failure stage)."""
        deals = self.crm.list_deals(lambda d: d["STAGE_SEMANTIC_ID"] == "P")
        if not deals:
            return False
        deal = self.rng.choice(deals)
        target = self._next_stage(deal["STAGE_ID"])
        if self.rng.random() < 0.05:
            category = int(deal["CATEGORY_ID"])
            target = next(
                s for s in self.crm.pipeline_stages(category) if self.crm.stages[s].semantics == "F"
            )
        if target is None:
            return False
        self.crm.move_deal(int(deal["ID"]), target, user_id=self.rng.choice(self.config.manager_ids))
        return True

    def pay_order(self) -> bool:
        """A customer pays an unpaid, open order."""
        orders = self.shop.list_orders(
            lambda o: o["payed"] == "N" and o["canceled"] == "N" and o["statusId"] not in (FINAL_STATUS, "C")
        )
        if not orders:
            return False
        self.shop.pay_order(int(self.rng.choice(orders)["id"]))
        return True

    def change_order_status(self) -> bool:
        """Staff moves a paid order along (P → D → F), or cancels an unpaid one now and then."""
        paid = self.shop.list_orders(lambda o: o["payed"] == "Y" and o["statusId"] in ("P", "D"))
        unpaid = self.shop.list_orders(lambda o: o["payed"] == "N" and o["statusId"] == "N")
        staff = self.rng.choice(self.config.staff_ids)
        if paid and (not unpaid or self.rng.random() < 0.85):
            order = self.rng.choice(paid)
            target = "D" if order["statusId"] == "P" else FINAL_STATUS
            self.shop.set_order_status(int(order["id"]), target, user_id=staff)
            return True
        if unpaid:
            self.shop.set_order_status(int(self.rng.choice(unpaid)["id"]), "C", user_id=staff)
            return True
        return False

    def new_order(self) -> bool:
        """A customer checks out and a manager opens the linked deal."""
        price = float(self.rng.choice([990, 1490, 2500, 4990, 12000]))
        order = self.shop.create_order(price=price, customer_id=self.rng.randint(100, 999))
        category = self.rng.choice(self.crm.pipelines())
        self.crm.create_deal(
            title=f"Заказ №{order['id']}",
            category_id=category,
            order_id=order["id"],
            opportunity=price,
            user_id=self.rng.choice(self.config.manager_ids),
        )
        return True

    def bulk_move(self) -> bool:
        """A mass action / robot moves K deals sharing a stage to the next stage (one event per deal)."""
        deals = self.crm.list_deals(lambda d: d["STAGE_SEMANTIC_ID"] == "P")
        by_stage: dict[str, list[int]] = {}
        for deal in deals:
            by_stage.setdefault(deal["STAGE_ID"], []).append(int(deal["ID"]))
        candidates = [s for s, ids in by_stage.items() if len(ids) >= 2 and self._next_stage(s)]
        if not candidates:
            return False
        stage_id = self.rng.choice(sorted(candidates))
        low, high = self.config.bulk_size
        ids = self.rng.sample(by_stage[stage_id], min(len(by_stage[stage_id]), self.rng.randint(low, high)))
        target = self._next_stage(stage_id)
        if target is None:
            return False
        self.crm.bulk_move(ids, target, user_id=self.rng.choice(self.config.manager_ids))
        return True
