"""The admin tests share the sync tests' sandbox portals (a story needs real decisions and writes)."""

from tests.sync.conftest import sandbox, sb

__all__ = ["sandbox", "sb"]
