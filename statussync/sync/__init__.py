"""The sync run: I/O around the engine (see `run.py` for the steps in order)."""

from .items import Item, ItemResult, items_for
from .run import items_sync, jobs_handle

__all__ = ["Item", "ItemResult", "items_for", "items_sync", "jobs_handle"]
