"""The demo: bxsync against the sandbox portals (``python -m demo``; ``make demo``). Development only."""
