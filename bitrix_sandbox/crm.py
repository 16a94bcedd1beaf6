"""Emulated Bitrix24 CRM portal: deals in pipelines (UPPER_CASE fields), stages, and their events.

Facts emulated, each with the path of its page in the Bitrix REST docs:
- deal fields come back as strings (``"CATEGORY_ID": "0"``), dates as ISO 8601 with the portal offset
  [docs/bitrix.md "Deals"];
- pipeline 0 uses bare stage ids, pipeline n uses ``C<n>:`` ids, exactly one S stage per pipeline
  [docs/bitrix.md "Stages and pipelines"];
- ``crm.deal.update`` changes the stage only within the deal's pipeline; another pipeline's stage changes
  nothing and still answers ``true``, and so does a stage no pipeline has (deleted, or never there)
  [docs/bitrix.md "Deals"];
- ``crm.item.update`` with ``categoryId`` moves pipelines and fires ONCRMDEALMOVETOCATEGORY, not
  ONCRMDEALUPDATE [docs/bitrix.md "Events"]; it does not save when nothing changed
  [docs/bitrix.md "Deals"];
- REST writes fire the same events as human ones (the echo) [docs/bitrix.md "Events"];
- legacy ``crm.deal.*`` errors are HTTP 400 with an empty ``error``
  [docs/bitrix.md "Deals"].
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .filters import FieldTypes, FilterDateError, filter_rows, order_rows, paginate
from .rest import CallContext, MethodResult, Portal, PortalConfig, RestError, lower_keys

DEAL_ENTITY_TYPE_ID = 2

# (STATUS_ID suffix, NAME, SORT, SEMANTICS, EXTRA.SEMANTICS, COLOR) of the default pipeline.
DEFAULT_STAGES: tuple[tuple[str, str, int, str | None, str, str], ...] = (
    ("NEW", "Новая", 10, None, "process", "#39A8EF"),
    ("PREPARATION", "Подготовка документов", 20, None, "process", "#2FC6F6"),
    ("PREPAYMENT_INVOICE", "Счёт на предоплату", 30, None, "process", "#55D0E0"),
    ("EXECUTING", "В работе", 40, None, "process", "#47E4C2"),  # noqa: RUF001 - Cyrillic on purpose
    ("FINAL_INVOICE", "Финальный счёт", 50, None, "process", "#FFA900"),
    ("WON", "Сделка успешна", 60, "S", "success", "#7BD500"),
    ("LOSE", "Сделка провалена", 70, "F", "failure", "#FF5752"),
    ("APOLOGY", "Анализ причины провала", 80, "F", "apology", "#FF5752"),
)
EXTRA_PIPELINE_STAGES = ("NEW", "PREPARATION", "PREPAYMENT_INVOICE", "EXECUTING", "WON", "LOSE")

STANDARD_FIELDS: tuple[str, ...] = (
    "ID",
    "TITLE",
    "TYPE_ID",
    "STAGE_ID",
    "PROBABILITY",
    "CURRENCY_ID",
    "OPPORTUNITY",
    "IS_MANUAL_OPPORTUNITY",
    "TAX_VALUE",
    "COMPANY_ID",
    "CONTACT_ID",
    "BEGINDATE",
    "CLOSEDATE",
    "OPENED",
    "CLOSED",
    "COMMENTS",
    "ASSIGNED_BY_ID",
    "CREATED_BY_ID",
    "MODIFY_BY_ID",
    "MOVED_BY_ID",
    "DATE_CREATE",
    "DATE_MODIFY",
    "MOVED_TIME",
    "SOURCE_ID",
    "ADDITIONAL_INFO",
    "CATEGORY_ID",
    "STAGE_SEMANTIC_ID",
    "IS_NEW",
    "IS_RECURRING",
    "IS_RETURN_CUSTOMER",
    "ORIGINATOR_ID",
    "ORIGIN_ID",
)
_INT_FIELDS = (
    "ID",
    "CATEGORY_ID",
    "ASSIGNED_BY_ID",
    "CREATED_BY_ID",
    "MODIFY_BY_ID",
    "MOVED_BY_ID",
    "COMPANY_ID",
)
_DATE_FIELDS = ("DATE_CREATE", "DATE_MODIFY", "MOVED_TIME", "BEGINDATE", "CLOSEDATE")
# Fields crm.deal.update may write; unknown/read-only ones are ignored [docs/bitrix.md "Deals"].
_WRITABLE = frozenset(
    {"TITLE", "TYPE_ID", "STAGE_ID", "CURRENCY_ID", "OPPORTUNITY", "ASSIGNED_BY_ID", "COMMENTS", "SOURCE_ID"}
    | {"BEGINDATE", "CLOSEDATE", "ORIGINATOR_ID", "ORIGIN_ID", "ADDITIONAL_INFO", "PROBABILITY"}
)

DEAL_EVENTS = frozenset({"ONCRMDEALADD", "ONCRMDEALUPDATE", "ONCRMDEALDELETE", "ONCRMDEALMOVETOCATEGORY"})
CRM_EVENTS = DEAL_EVENTS | {"ONCRMTIMELINECOMMENTADD"}
# What bxsync subscribes to (README); the comment event is emitted, "unsubscribed" unless asked for.
CRM_DEFAULT_SUBSCRIBED = DEAL_EVENTS
# api-reference/crm/deals/events/index.md: ONCRMDEALMOVETOCATEGORY can be bound only by an application, never
# by an outgoing webhook; and a move fires no ONCRMDEALUPDATE [docs/bitrix.md "Events"].
CRM_APPLICATION_ONLY = frozenset({"ONCRMDEALMOVETOCATEGORY"})
CRM_WRITE_METHODS = frozenset(
    {"crm.deal.update", "crm.deal.add", "crm.deal.delete", "crm.item.update", "crm.timeline.comment.add"}
)
# crm.timeline.comment.add attaches comments to any CRM type; the sandbox has deals only.
COMMENT_ENTITY_TYPES = frozenset({"lead", "deal", "contact", "company", "order"})


@dataclass
class CrmConfig(PortalConfig):
    """CRM portal settings: the deal order field and the extra pipelines ``{id: name}`` (0 always exists)."""

    order_field: str = "UF_CRM_ORDER_ID"
    # Deal ids start elsewhere than order ids so a client mixing them up fails loudly.
    first_deal_id: int = 101
    pipelines: dict[int, str] = field(default_factory=lambda: {1: "Опт"})
    default_pipeline_name: str = "Общая"


@dataclass(frozen=True)
class Stage:
    """One deal stage of one pipeline."""

    status_id: str
    name: str
    sort: int
    semantics: str | None  # None (in progress) | "S" | "F"
    extra_semantics: str
    color: str
    category_id: int
    row_id: int

    @property
    def semantic_id(self) -> str:
        """STAGE_SEMANTIC_ID: P/S/F."""
        return self.semantics or "P"

    @property
    def entity_id(self) -> str:
        """The crm.status dictionary: ``DEAL_STAGE`` or ``DEAL_STAGE_<n>``."""
        return "DEAL_STAGE" if self.category_id == 0 else f"DEAL_STAGE_{self.category_id}"


def uf_camel(name: str) -> str:
    """``UF_CRM_ORDER_ID`` → ``ufCrmOrderId`` (crm.item.* camelCase naming)."""
    head, *rest = name.lower().split("_")
    return head + "".join(part.capitalize() for part in rest)


class CrmPortal(Portal):
    """Deals, pipelines and stages, with REST methods and human actions."""

    kind = "crm"
    EVENT_NAMES = CRM_EVENTS
    DEFAULT_SUBSCRIBED = CRM_DEFAULT_SUBSCRIBED
    APPLICATION_ONLY_EVENTS = CRM_APPLICATION_ONLY
    WRITE_METHODS = CRM_WRITE_METHODS

    def __init__(self, config: CrmConfig | None = None, seed: int | str = 0) -> None:
        self.crm_config = config or CrmConfig()
        self.order_field = self.crm_config.order_field
        self.deals: dict[int, dict[str, Any]] = {}
        self._next_deal_id = self.crm_config.first_deal_id
        self.categories: dict[int, dict[str, Any]] = {}
        self.stages: dict[str, Stage] = {}
        self.comments: dict[int, dict[str, Any]] = {}  # comment id -> crm.timeline.comment.list row
        self._next_comment_id = 1
        self._build_pipelines()
        super().__init__(self.crm_config, seed)

    # -- pipelines -------------------------------------------------------------------------------------------

    def _build_pipelines(self) -> None:
        row_id = 101
        self.categories[0] = {
            "id": 0,
            "name": self.crm_config.default_pipeline_name,
            "sort": 100,
            "entityTypeId": DEAL_ENTITY_TYPE_ID,
            "isDefault": "Y",
        }
        for code, name, sort, sem, extra, color in DEFAULT_STAGES:
            self.stages[code] = Stage(code, name, sort, sem, extra, color, 0, row_id)
            row_id += 2
        by_code = {s[0]: s for s in DEFAULT_STAGES}
        for n, (cat_id, cat_name) in enumerate(sorted(self.crm_config.pipelines.items())):
            if cat_id == 0:
                continue
            # [docs/bitrix.md "Stages and pipelines"] created pipelines also carry
            # originId/originatorId; the default one does not.
            self.categories[cat_id] = {
                "id": cat_id,
                "name": cat_name,
                "sort": 200 + n * 10,
                "entityTypeId": DEAL_ENTITY_TYPE_ID,
                "isDefault": "N",
                "originId": "",
                "originatorId": "",
            }
            for code in EXTRA_PIPELINE_STAGES:
                _, name, sort, sem, extra, color = by_code[code]
                status_id = f"C{cat_id}:{code}"
                self.stages[status_id] = Stage(status_id, name, sort, sem, extra, color, cat_id, row_id)
                row_id += 2

    def pipeline_stages(self, category_id: int) -> list[str]:
        """Stage ids of a pipeline in SORT order."""
        rows = [s for s in self.stages.values() if s.category_id == category_id]
        return [s.status_id for s in sorted(rows, key=lambda s: s.sort)]

    def pipelines(self) -> list[int]:
        """Pipeline (category) ids."""
        return sorted(self.categories)

    def success_stage(self, category_id: int) -> str:
        """The single S stage of a pipeline."""
        return next(
            s.status_id for s in self.stages.values() if s.category_id == category_id and s.semantics == "S"
        )

    def _field_types(self) -> FieldTypes:
        types: FieldTypes = dict.fromkeys(STANDARD_FIELDS, "str")
        types.update(dict.fromkeys(_INT_FIELDS, "int"))
        types.update(dict.fromkeys(_DATE_FIELDS, "datetime"))
        types["OPPORTUNITY"] = "float"
        types[self.order_field] = "str"
        return types

    # -- state readers ---------------------------------------------------------------------------------------

    def get_deal(self, deal_id: int) -> dict[str, Any] | None:
        """A copy of the deal as ``crm.deal.get`` would return it, or None."""
        with self.lock:
            deal = self.deals.get(int(deal_id))
            return copy.deepcopy(deal) if deal is not None else None

    def list_deals(self, predicate: Callable[[dict[str, Any]], bool] | None = None) -> list[dict[str, Any]]:
        """Copies of all deals (optionally filtered), by id."""
        with self.lock:
            rows = [dict(d) for _, d in sorted(self.deals.items())]
        return [d for d in rows if predicate is None or predicate(d)]

    def deals_for_order(self, order_id: int | str) -> list[dict[str, Any]]:
        """Deals whose order field equals ``order_id``."""
        return self.list_deals(lambda d: d.get(self.order_field) == str(order_id))

    # -- domain operations (shared by REST and human paths) --------------------------------------------------

    def _stage_fields(self, stage: Stage) -> dict[str, Any]:
        first = self.pipeline_stages(stage.category_id)[0]
        return {
            "STAGE_ID": stage.status_id,
            "CATEGORY_ID": str(stage.category_id),
            "STAGE_SEMANTIC_ID": stage.semantic_id,
            "CLOSED": "Y" if stage.semantics in ("S", "F") else "N",
            "IS_NEW": "Y" if stage.status_id == first else "N",
        }

    def _normalize(self, name: str, value: Any) -> Any:
        if value in (None, ""):
            return None if name in _INT_FIELDS or name in _DATE_FIELDS or name == self.order_field else ""
        if name in _INT_FIELDS:
            return str(int(float(value)))
        if name == "OPPORTUNITY":
            return f"{float(value):.2f}"
        if name in _DATE_FIELDS:
            parsed = self.clock.parse(value)
            return self.clock.format(parsed) if parsed else None
        return str(value)

    def add_deal(
        self,
        fields: dict[str, Any],
        *,
        actor: int,
        source: str,
        emit: bool = True,
    ) -> int:
        """Create a deal; fires ONCRMDEALADD when ``emit`` [docs/bitrix.md "Events"]."""
        with self.lock:
            try:
                category_id = int(fields.get("CATEGORY_ID") or 0)
            except (TypeError, ValueError):
                category_id = 0
            if category_id not in self.categories:
                category_id = 0
            stage_id = str(fields.get("STAGE_ID") or "")
            stage = self.stages.get(stage_id)
            if stage is None or stage.category_id != category_id:
                stage = self.stages[self.pipeline_stages(category_id)[0]]
            deal_id = self._next_deal_id
            self._next_deal_id += 1
            now = self.clock.now_iso()
            deal: dict[str, Any] = {
                "ID": str(deal_id),
                "TITLE": str(fields.get("TITLE") or f"Сделка #{deal_id}"),
                "TYPE_ID": str(fields.get("TYPE_ID") or "SALE"),
                "STAGE_ID": stage.status_id,
                "PROBABILITY": None,
                "CURRENCY_ID": str(fields.get("CURRENCY_ID") or "RUB"),
                "OPPORTUNITY": self._normalize("OPPORTUNITY", fields.get("OPPORTUNITY") or 0),
                "IS_MANUAL_OPPORTUNITY": "N",
                "TAX_VALUE": "0.00",
                "COMPANY_ID": "0",
                "CONTACT_ID": None,
                "BEGINDATE": now,
                "CLOSEDATE": now,
                "OPENED": "Y",
                "CLOSED": "N",
                "COMMENTS": str(fields.get("COMMENTS") or ""),
                "ASSIGNED_BY_ID": self._normalize("ASSIGNED_BY_ID", fields.get("ASSIGNED_BY_ID") or actor),
                "CREATED_BY_ID": str(actor),
                "MODIFY_BY_ID": str(actor),
                "MOVED_BY_ID": str(actor),
                "DATE_CREATE": now,
                "DATE_MODIFY": now,
                "MOVED_TIME": now,
                "SOURCE_ID": str(fields.get("SOURCE_ID") or "STORE"),
                "ADDITIONAL_INFO": None,
                "CATEGORY_ID": str(category_id),
                "STAGE_SEMANTIC_ID": stage.semantic_id,
                "IS_NEW": "Y",
                "IS_RECURRING": "N",
                "IS_RETURN_CUSTOMER": "N",
                "ORIGINATOR_ID": fields.get("ORIGINATOR_ID"),
                "ORIGIN_ID": fields.get("ORIGIN_ID"),
                self.order_field: self._normalize(self.order_field, fields.get(self.order_field)),
            }
            deal.update(self._stage_fields(stage))
            self.deals[deal_id] = deal
            self.count_write(source, "crm.deal.add")
            if emit:
                self.events.emit("ONCRMDEALADD", {"ID": deal_id})
            return deal_id

    def update_deal(
        self,
        deal_id: int,
        fields: dict[str, Any],
        *,
        actor: int,
        source: str,
        noop_event: bool | None = None,
        write_name: str = "crm.deal.update",
    ) -> dict[str, Any]:
        """Apply ``crm.deal.update`` semantics; returns the fields that actually changed.

        A STAGE_ID outside the deal's pipeline is ignored [docs/bitrix.md "Deals"].
        ONCRMDEALUPDATE fires when something changed, or always when ``noop_event`` (default: the portal's
        ``event_on_noop_update`` switch).
        """
        with self.lock:
            deal = self.deals.get(int(deal_id))
            if deal is None:
                raise KeyError(deal_id)
            category_id = int(deal["CATEGORY_ID"])
            changed: dict[str, Any] = {}
            for name, value in fields.items():
                if name == "STAGE_ID":
                    stage = self.stages.get(str(value))
                    if stage is None or stage.category_id != category_id:
                        # "ничего не изменится": another pipeline's stage; an unknown (or deleted) one too,
                        # since api-reference/crm/deals/crm-deal-update.md ignores "an incorrect field" and
                        # lists no error for it [docs/bitrix.md "Deals"].
                        continue
                    new: Any = stage.status_id
                elif name in _WRITABLE or name == self.order_field:
                    new = self._normalize(name, value)
                else:
                    continue
                if deal.get(name) != new:
                    changed[name] = new
            if changed:
                now = self.clock.now_iso()
                deal.update(changed)
                deal["DATE_MODIFY"] = now
                deal["MODIFY_BY_ID"] = str(actor)
                if "STAGE_ID" in changed:
                    deal.update(self._stage_fields(self.stages[changed["STAGE_ID"]]))
                    deal["MOVED_BY_ID"] = str(actor)
                    deal["MOVED_TIME"] = now
            if source == "rest" or changed:
                self.count_write(source, write_name, applied=bool(changed))
            fire = self.config.event_on_noop_update if noop_event is None else noop_event
            if changed or fire:
                self.events.emit("ONCRMDEALUPDATE", {"ID": int(deal_id)})
            return changed

    def move_to_category(
        self, deal_id: int, category_id: int, stage_id: str | None, *, actor: int, source: str
    ) -> bool:
        """Move a deal to another pipeline (default: its first stage); fires ONCRMDEALMOVETOCATEGORY.

        [docs/bitrix.md "Events"] a pipeline move does not fire ONCRMDEALUPDATE.
        """
        with self.lock:
            deal = self.deals.get(int(deal_id))
            if deal is None:
                raise KeyError(deal_id)
            if category_id not in self.categories:
                raise ValueError(f"no pipeline {category_id}")
            stage = self.stages.get(str(stage_id)) if stage_id else None
            if stage is None or stage.category_id != category_id:
                stage = self.stages[self.pipeline_stages(category_id)[0]]
            if int(deal["CATEGORY_ID"]) == category_id and deal["STAGE_ID"] == stage.status_id:
                return False
            now = self.clock.now_iso()
            deal.update(self._stage_fields(stage))
            # Whether a pipeline move changes DATE_MODIFY is undocumented: a switch (bitrix doctor probes it).
            if self.account.settings.move_changes_date_modify:
                deal["DATE_MODIFY"] = now
            deal["MODIFY_BY_ID"] = str(actor)
            deal["MOVED_BY_ID"] = str(actor)
            deal["MOVED_TIME"] = now
            self.count_write(source, "crm.item.update")
            self.events.emit(
                "ONCRMDEALMOVETOCATEGORY",
                {"ID": int(deal_id), "CATEGORY_ID": category_id, "STAGE_ID": stage.status_id},
            )
            return True

    def delete_deal_record(self, deal_id: int, *, source: str, emit: bool = True) -> None:
        """Delete a deal; fires ONCRMDEALDELETE."""
        with self.lock:
            if self.deals.pop(int(deal_id), None) is None:
                raise KeyError(deal_id)
            # The deal's timeline goes with it.
            for comment_id in [c for c, row in self.comments.items() if row["ENTITY_ID"] == str(deal_id)]:
                del self.comments[comment_id]
            self.count_write(source, "crm.deal.delete")
            if emit:
                self.events.emit("ONCRMDEALDELETE", {"ID": int(deal_id)})

    # -- human actions ---------------------------------------------------------------------------------------

    def _actor(self, user_id: int | None) -> int:
        return int(user_id) if user_id is not None else int(self.config.human_user_id)

    def move_deal(self, deal_id: int, stage_id: str, user_id: int | None = None) -> dict[str, Any]:
        """A manager drags the deal to ``stage_id`` of its own pipeline; fires ONCRMDEALUPDATE."""
        with self.lock:
            deal = self.deals.get(int(deal_id))
            if deal is None:
                raise KeyError(deal_id)
            stage = self.stages.get(stage_id)
            if stage is None or stage.category_id != int(deal["CATEGORY_ID"]):
                raise ValueError(
                    f"stage {stage_id!r} is not in pipeline {deal['CATEGORY_ID']} of deal {deal_id}"
                )
            self.update_deal(deal_id, {"STAGE_ID": stage_id}, actor=self._actor(user_id), source="human")
            return copy.deepcopy(self.deals[int(deal_id)])

    def add_stage(self, category_id: int, code: str, name: str, sort: int) -> str:
        """An administrator adds an in-progress stage to a pipeline (``C<n>:`` prefixed outside pipeline 0);
        returns its STATUS_ID. No event: stage changes fire none that bxsync subscribes to."""
        with self.lock:
            if int(category_id) not in self.categories:
                raise ValueError(f"no pipeline {category_id}")
            status_id = code if int(category_id) == 0 else f"C{int(category_id)}:{code}"
            if status_id in self.stages:
                raise ValueError(f"stage {status_id!r} exists")
            row_id = max(s.row_id for s in self.stages.values()) + 2
            self.stages[status_id] = Stage(
                status_id, name, int(sort), None, "process", "#ACB2B8", int(category_id), row_id
            )
            return status_id

    def delete_stage(self, stage_id: str) -> None:
        """An administrator deletes a stage. Deals already there keep its id as their STAGE_ID; a later
        ``crm.deal.update`` to it answers ``true`` and changes nothing, as for any STAGE_ID the deal's
        pipeline does not have [docs/bitrix.md "Deals"]."""
        with self.lock:
            stage = self.stages.get(stage_id)
            if stage is None:
                raise ValueError(f"no stage {stage_id!r}")
            if stage.semantics == "S":
                raise ValueError("a pipeline's success stage cannot be deleted")
            del self.stages[stage_id]

    def move_deal_to_pipeline(
        self, deal_id: int, category_id: int, stage_id: str | None = None, user_id: int | None = None
    ) -> dict[str, Any]:
        """A manager moves the deal to another pipeline; fires ONCRMDEALMOVETOCATEGORY only."""
        self.move_to_category(
            int(deal_id), int(category_id), stage_id, actor=self._actor(user_id), source="human"
        )
        return self.get_deal(int(deal_id)) or {}

    def edit_deal(self, deal_id: int, fields: dict[str, Any], user_id: int | None = None) -> dict[str, Any]:
        """A manager edits arbitrary fields in the deal card (same rules as crm.deal.update)."""
        self.update_deal(int(deal_id), fields, actor=self._actor(user_id), source="human")
        return self.get_deal(int(deal_id)) or {}

    def set_deal_order(
        self, deal_id: int, order_id: int | str | None, user_id: int | None = None
    ) -> dict[str, Any]:
        """A manager fills (or clears, with None) the deal's order field."""
        return self.edit_deal(deal_id, {self.order_field: order_id}, user_id)

    def create_deal(
        self,
        title: str | None = None,
        category_id: int = 0,
        stage_id: str | None = None,
        order_id: int | str | None = None,
        opportunity: float = 0.0,
        user_id: int | None = None,
        emit: bool = True,
    ) -> dict[str, Any]:
        """A manager creates a deal; fires ONCRMDEALADD (unless ``emit=False``, used for silent seeding)."""
        fields = {
            "TITLE": title,
            "CATEGORY_ID": category_id,
            "STAGE_ID": stage_id,
            "OPPORTUNITY": opportunity,
            self.order_field: order_id,
        }
        deal_id = self.add_deal(fields, actor=self._actor(user_id), source="human", emit=emit)
        return self.get_deal(deal_id) or {}

    def delete_deal(self, deal_id: int, user_id: int | None = None) -> None:
        """A manager deletes a deal; fires ONCRMDEALDELETE."""
        self.delete_deal_record(int(deal_id), source="human")

    def bulk_move(self, deal_ids: Iterable[int], stage_id: str, user_id: int | None = None) -> list[int]:
        """Move many deals at once (a robot / mass action): one ONCRMDEALUPDATE per moved deal.

        Deals of other pipelines (where ``stage_id`` does not exist) or already there are skipped.
        [docs/bitrix.md "Events"] no throttling: 10,000 deals → 10,000 events.
        """
        moved: list[int] = []
        actor = self._actor(user_id)
        with self.lock:
            stage = self.stages.get(stage_id)
            if stage is None:
                raise ValueError(f"unknown stage {stage_id!r}")
            for deal_id in deal_ids:
                deal = self.deals.get(int(deal_id))
                if (
                    deal is None
                    or int(deal["CATEGORY_ID"]) != stage.category_id
                    or deal["STAGE_ID"] == stage_id
                ):
                    continue
                self.update_deal(int(deal_id), {"STAGE_ID": stage_id}, actor=actor, source="human")
                moved.append(int(deal_id))
        return moved

    def human_actions(self) -> dict[str, Callable[..., Any]]:
        """Actions the control API exposes under ``/_sandbox/human/<name>``."""
        return {
            "move_deal": self.move_deal,
            "move_deal_to_pipeline": self.move_deal_to_pipeline,
            "edit_deal": self.edit_deal,
            "set_deal_order": self.set_deal_order,
            "create_deal": self.create_deal,
            "delete_deal": self.delete_deal,
            "bulk_move": self.bulk_move,
            "add_stage": self.add_stage,
            "delete_stage": self.delete_stage,
        }

    def state(self) -> dict[str, Any]:
        """All deals, the pipelines with their stage ids, and the timeline comments by deal id."""
        with self.lock:
            comments: dict[str, list[dict[str, Any]]] = {}
            for _, row in sorted(self.comments.items()):
                comments.setdefault(row["ENTITY_ID"], []).append(dict(row))
        return {
            "deals": self.list_deals(),
            "pipelines": {str(c): self.pipeline_stages(c) for c in self.pipelines()},
            "comments": comments,
        }

    def entity(self, kind: str, entity_id: int) -> dict[str, Any] | list[dict[str, Any]] | None:
        """``deal`` by id, or a deal's timeline ``comments`` (None when there is no such deal)."""
        if kind == "deal":
            return self.get_deal(entity_id)
        if kind == "comments":
            return self.deal_comments(entity_id) if self.get_deal(entity_id) is not None else None
        return None

    def reset_state(self) -> None:
        """Delete every deal and comment silently (ids are not reused); pipelines get their stages back."""
        with self.lock:
            self.deals.clear()
            self.comments.clear()
            self.stages.clear()
            self.categories.clear()
            self._build_pipelines()

    # -- timeline comments -----------------------------------------------------------------------------------

    def add_comment(self, deal_id: int, comment: str, *, actor: int, source: str) -> int:
        """Add a comment to a deal's timeline; returns its id.

        It fires ONCRMTIMELINECOMMENTADD (``data[ID]``), not ONCRMDEALUPDATE, and leaves the deal as it was
        (DATE_MODIFY included): the deal events fire on changes to the deal itself
        [docs/bitrix.md "Events"], a comment is a timeline record with events of its own
        [docs/bitrix.md "Timeline comments"].
        """
        with self.lock:
            if int(deal_id) not in self.deals:
                raise KeyError(deal_id)
            comment_id = self._next_comment_id
            self._next_comment_id += 1
            # Shaped like a crm.timeline.comment.list row [docs/bitrix.md "Timeline comments"].
            self.comments[comment_id] = {
                "ID": str(comment_id),
                "ENTITY_ID": str(int(deal_id)),
                "ENTITY_TYPE": "deal",
                "CREATED": self.clock.now_iso(),
                "COMMENT": str(comment),
                "AUTHOR_ID": str(actor),
                "FILES": {},
            }
            self.metrics.inc("timeline_comments", source)
            self.events.emit("ONCRMTIMELINECOMMENTADD", {"ID": comment_id}, wrap=None)
            return comment_id

    def deal_comments(self, deal_id: int) -> list[dict[str, Any]]:
        """Copies of a deal's timeline comments, oldest first."""
        with self.lock:
            return [
                dict(row) for _, row in sorted(self.comments.items()) if row["ENTITY_ID"] == str(int(deal_id))
            ]

    # -- REST methods ----------------------------------------------------------------------------------------

    def _register(self) -> None:
        self.register("crm.deal.get", self._rest_deal_get)
        self.register("crm.deal.list", self._rest_deal_list)
        self.register("crm.deal.update", self._rest_deal_update)
        self.register("crm.deal.add", self._rest_deal_add)
        self.register("crm.deal.delete", self._rest_deal_delete)
        self.register("crm.deal.fields", self._rest_deal_fields)
        self.register("crm.status.list", self._rest_status_list)
        self.register("crm.category.list", self._rest_category_list)
        self.register("crm.item.update", self._rest_item_update)
        self.register("crm.item.get", self._rest_item_get)
        self.register("crm.timeline.comment.add", self._rest_comment_add)
        self.register("crm.timeline.comment.list", self._rest_comment_list)

    @staticmethod
    def _deal_id(params: dict[str, Any]) -> int:
        try:
            deal_id = int(str(params.get("id")))
        except (TypeError, ValueError):
            deal_id = 0
        if deal_id <= 0:
            # [docs/bitrix.md "Errors"]
            raise RestError(400, "", "ID is not defined or invalid.")
        return deal_id

    @staticmethod
    def _not_found() -> RestError:
        # [docs/bitrix.md "Errors"] HTTP 400, empty error code.
        return RestError(400, "", "Not found")

    def _rest_deal_get(self, params: dict[str, Any], ctx: CallContext) -> MethodResult:
        deal = self.get_deal(self._deal_id(lower_keys(params)))
        if deal is None:
            raise self._not_found()
        return MethodResult(deal)

    def _select(self, deal: dict[str, Any], select: Any) -> dict[str, Any]:
        # [docs/bitrix.md "Lists"] default is '*' + 'UF_*'; '*' alone excludes user fields.
        if not select:
            return deal
        if not isinstance(select, list):
            select = [select]
        wanted: set[str] = set()
        for item in select:
            item = str(item)
            if item == "*":
                wanted.update(STANDARD_FIELDS)
            elif item == "UF_*":
                wanted.update(k for k in deal if k.startswith("UF_"))
            else:
                wanted.add(item)
        return {k: v for k, v in deal.items() if k in wanted}

    def _rest_deal_list(self, params: dict[str, Any], ctx: CallContext) -> MethodResult:
        params = lower_keys(params)
        types = self._field_types()
        with self.lock:
            try:
                rows = filter_rows(self.deals.values(), params.get("filter"), types, self.clock)
            except FilterDateError:
                # api-reference/crm/deals/crm-deal-list.md "Possible Error Codes": the list's general error.
                raise RestError(400, "", "Failed to get list. General error.") from None
            rows = order_rows(rows, params.get("order"), types, self.clock, default_key="ID")
            page, total, nxt = paginate(rows, params.get("start"))
            # Deal rows are flat (str/None values), so a shallow copy is a full copy.
            return MethodResult([dict(self._select(d, params.get("select"))) for d in page], total, nxt)

    def _rest_deal_update(self, params: dict[str, Any], ctx: CallContext) -> MethodResult:
        params = lower_keys(params)
        deal_id = self._deal_id(params)
        fields = params.get("fields")
        if not isinstance(fields, dict):
            raise RestError(400, "", "Parameter 'fields' must be array.")
        try:
            self.update_deal(deal_id, fields, actor=ctx.user_id, source="rest")
        except KeyError:
            raise self._not_found() from None
        return MethodResult(True)

    def _rest_deal_add(self, params: dict[str, Any], ctx: CallContext) -> MethodResult:
        fields = lower_keys(params).get("fields")
        if not isinstance(fields, dict):
            raise RestError(400, "", "Parameter 'fields' must be array.")
        return MethodResult(self.add_deal(fields, actor=ctx.user_id, source="rest"))

    def _rest_deal_delete(self, params: dict[str, Any], ctx: CallContext) -> MethodResult:
        deal_id = self._deal_id(lower_keys(params))
        try:
            self.delete_deal_record(deal_id, source="rest")
        except KeyError:
            raise self._not_found() from None
        return MethodResult(True)

    def _rest_deal_fields(self, params: dict[str, Any], ctx: CallContext) -> MethodResult:
        # [api-reference/crm/deals/crm-deal-fields.md] {name: {type, isRequired, isReadOnly, isImmutable,
        # isMultiple, isDynamic, title}}; user fields add listLabel/formLabel/filterLabel and settings.
        kinds = {"int": "integer", "datetime": "datetime", "float": "double", "str": "string"}
        result: dict[str, Any] = {}
        for name, kind in self._field_types().items():
            if name == self.order_field:
                continue
            result[name] = {
                "type": "crm_status" if name == "STAGE_ID" else kinds[kind],
                "isRequired": False,
                "isReadOnly": name in ("ID", "DATE_CREATE", "DATE_MODIFY", "MOVED_TIME", "STAGE_SEMANTIC_ID"),
                "isImmutable": name == "CATEGORY_ID",
                "isMultiple": False,
                "isDynamic": False,
                "title": name,
            }
        account = self.account.settings
        if account.order_field_listed:
            result[self.order_field] = {
                "type": account.order_field_type,
                "isRequired": False,
                "isReadOnly": False,
                "isImmutable": False,
                "isMultiple": account.order_field_multiple,
                "isDynamic": True,
                "title": self.order_field,
                "listLabel": "Номер заказа",
                "formLabel": "Номер заказа",
                "filterLabel": "Номер заказа",
                "settings": {"SIZE": 20, "ROWS": 1, "REGEXP": "", "MIN_LENGTH": 0, "MAX_LENGTH": 50},
            }
        return MethodResult(result)

    def _status_rows(self) -> list[dict[str, Any]]:
        rows = []
        deleted = set(self.account.settings.deleted_stages)
        for stage in self.stages.values():
            if stage.status_id in deleted:
                continue
            rows.append(
                {
                    "ID": str(stage.row_id),
                    "ENTITY_ID": stage.entity_id,
                    "STATUS_ID": stage.status_id,
                    "NAME": stage.name,
                    "NAME_INIT": stage.name if stage.semantics or stage.sort == 10 else "",
                    "SORT": str(stage.sort),
                    "SYSTEM": "Y" if stage.semantics == "S" or stage.sort in (10, 70) else "N",
                    # null for the default pipeline [docs/bitrix.md "Stages and pipelines"]
                    "CATEGORY_ID": None if stage.category_id == 0 else str(stage.category_id),
                    "COLOR": stage.color,
                    "SEMANTICS": stage.semantics,
                    "EXTRA": {"SEMANTICS": stage.extra_semantics, "COLOR": stage.color},
                }
            )
        return rows

    def _rest_status_list(self, params: dict[str, Any], ctx: CallContext) -> MethodResult:
        params = lower_keys(params)
        types: FieldTypes = {
            "ID": "int",
            "ENTITY_ID": "str",
            "STATUS_ID": "str",
            "NAME": "str",
            "SORT": "int",
            "SYSTEM": "str",
            "CATEGORY_ID": "int",
            "SEMANTICS": "str",
        }
        rows = filter_rows(self._status_rows(), params.get("filter"), types, self.clock)
        rows = order_rows(rows, params.get("order"), types, self.clock, default_key="ID")
        page, total, nxt = paginate(rows, params.get("start"))
        return MethodResult(page, total, nxt)

    def _rest_category_list(self, params: dict[str, Any], ctx: CallContext) -> MethodResult:
        params = lower_keys(params)
        try:
            entity_type_id = int(params.get("entitytypeid"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            entity_type_id = 0
        if entity_type_id != DEAL_ENTITY_TYPE_ID:
            # [docs/bitrix.md "Stages and pipelines"]
            raise RestError(400, "NOT_FOUND", "Smart process not found")
        # Only deals have pipelines here; a smart process's entityTypeId is unknown to the sandbox.
        cats = sorted(self.categories.values(), key=lambda c: (c["sort"], c["id"]))
        return MethodResult({"categories": copy.deepcopy(cats)}, total=len(cats))

    def _item(self, deal: dict[str, Any]) -> dict[str, Any]:
        """The crm.item.* camelCase view of a deal."""
        return {
            "id": int(deal["ID"]),
            "title": deal["TITLE"],
            "categoryId": int(deal["CATEGORY_ID"]),
            "stageId": deal["STAGE_ID"],
            "stageSemanticId": deal["STAGE_SEMANTIC_ID"],
            "opportunity": float(deal["OPPORTUNITY"] or 0),
            "currencyId": deal["CURRENCY_ID"],
            "assignedById": int(deal["ASSIGNED_BY_ID"] or 0),
            "createdBy": int(deal["CREATED_BY_ID"] or 0),
            "updatedBy": int(deal["MODIFY_BY_ID"] or 0),
            "movedBy": int(deal["MOVED_BY_ID"] or 0),
            "createdTime": deal["DATE_CREATE"],
            "updatedTime": deal["DATE_MODIFY"],
            "movedTime": deal["MOVED_TIME"],
            "closed": deal["CLOSED"],
            "entityTypeId": DEAL_ENTITY_TYPE_ID,
            uf_camel(self.order_field): deal.get(self.order_field),
        }

    def _item_target(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        try:
            entity_type_id = int(params.get("entitytypeid"))  # type: ignore[arg-type]
            item_id = int(params.get("id"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise RestError(400, "NOT_FOUND", "Smart process not found") from None
        if entity_type_id != DEAL_ENTITY_TYPE_ID:
            raise RestError(400, "NOT_FOUND", "Smart process not found")
        with self.lock:
            deal = self.deals.get(item_id)
            if deal is None:
                # [docs/bitrix.md "Errors"] 400 NOT_FOUND
                raise RestError(400, "NOT_FOUND", "Element not found")
            return item_id, deal

    def _rest_item_get(self, params: dict[str, Any], ctx: CallContext) -> MethodResult:
        _, deal = self._item_target(lower_keys(params))
        with self.lock:
            return MethodResult({"item": self._item(deal)})

    def _rest_item_update(self, params: dict[str, Any], ctx: CallContext) -> MethodResult:
        params = lower_keys(params)
        item_id, deal = self._item_target(params)
        fields = params.get("fields")
        if not isinstance(fields, dict):
            raise RestError(400, "", "Parameter 'fields' must be array.")
        camel_order = uf_camel(self.order_field)
        with self.lock:
            current_category = int(deal["CATEGORY_ID"])
            target_category = current_category
            if fields.get("categoryId") not in (None, ""):
                target_category = int(fields["categoryId"])
                if target_category not in self.categories:
                    raise RestError(400, "NOT_FOUND", "Category not found")
            stage_id = fields.get("stageId")
            if target_category != current_category:
                self.move_to_category(item_id, target_category, stage_id, actor=ctx.user_id, source="rest")
            else:
                legacy: dict[str, Any] = {}
                if stage_id not in (None, ""):
                    stage = self.stages.get(str(stage_id))
                    if stage is None or stage.category_id != current_category:
                        # Sandbox choice: crm.item.update validates the stage (crm.deal.update ignores it).
                        raise RestError(
                            400, "CRM_FIELD_ERROR_VALUE_NOT_VALID", "Stage is not valid for this item"
                        )
                    legacy["STAGE_ID"] = stage.status_id
                for camel, upper in (
                    ("title", "TITLE"),
                    ("opportunity", "OPPORTUNITY"),
                    ("assignedById", "ASSIGNED_BY_ID"),
                ):
                    if camel in fields:
                        legacy[upper] = fields[camel]
                for key in (camel_order, self.order_field):
                    if key in fields:
                        legacy[self.order_field] = fields[key]
                # [docs/bitrix.md "Deals"] nothing changed → nothing saved → no event.
                self.update_deal(
                    item_id,
                    legacy,
                    actor=ctx.user_id,
                    source="rest",
                    noop_event=False,
                    write_name="crm.item.update",
                )
            return MethodResult({"item": self._item(self.deals[item_id])})

    def _rest_comment_add(self, params: dict[str, Any], ctx: CallContext) -> MethodResult:
        # [docs/bitrix.md "Timeline comments"] since crm 23.100.0 only a
        # lower-case "fields" is accepted; ENTITY_ID, ENTITY_TYPE and COMMENT are required; result is the id.
        fields = params.get("fields")
        if not isinstance(fields, dict) or not {"ENTITY_ID", "ENTITY_TYPE", "COMMENT"} <= set(fields):
            raise RestError(400, 100, "Required fields are not specified")
        entity_type = str(fields["ENTITY_TYPE"]).lower()
        if entity_type not in COMMENT_ENTITY_TYPES:
            raise RestError(400, "NOT_FOUND", "Not found.")
        if not str(fields["COMMENT"]).strip():
            raise RestError(400, "INVALID_ARG_VALUE", "Empty comment")
        try:
            entity_id = int(str(fields["ENTITY_ID"]))
        except ValueError:
            entity_id = 0
        if entity_type != "deal" or entity_id <= 0:
            raise RestError(400, "OWNER_NOT_FOUND", "Owner not found.")
        try:
            comment_id = self.add_comment(entity_id, str(fields["COMMENT"]), actor=ctx.user_id, source="rest")
        except KeyError:
            raise RestError(400, "OWNER_NOT_FOUND", "Owner not found.") from None
        return MethodResult(comment_id)

    def _rest_comment_list(self, params: dict[str, Any], ctx: CallContext) -> MethodResult:
        # [docs/bitrix.md "Timeline comments"] filter by ENTITY_ID and
        # ENTITY_TYPE (both required), order by ID, CREATED or AUTHOR_ID, 50 a page with total.
        params = lower_keys(params)
        flt = params.get("filter")
        if not isinstance(flt, dict) or not {"ENTITY_ID", "ENTITY_TYPE"} <= set(flt):
            raise RestError(400, "", "ENTITY_ID and ENTITY_TYPE are required in filter.")
        types: FieldTypes = {
            "ID": "int",
            "ENTITY_ID": "int",
            "ENTITY_TYPE": "str",
            "CREATED": "datetime",
            "AUTHOR_ID": "int",
            "COMMENT": "str",
        }
        order = params.get("order")
        if isinstance(order, dict):
            order = {k: v for k, v in order.items() if k in ("ID", "CREATED", "AUTHOR_ID")}
        with self.lock:
            rows = filter_rows([dict(r) for r in self.comments.values()], flt, types, self.clock)
        rows = order_rows(rows, order, types, self.clock, default_key="ID")
        page, total, nxt = paginate(rows, params.get("start"))
        select = params.get("select")
        if select:
            wanted = set(select if isinstance(select, list) else [select])
            page = [{k: v for k, v in row.items() if k in wanted} for row in page]
        return MethodResult(page, total, nxt)
