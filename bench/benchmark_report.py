"""What every benchmark shares: the code it measures, and where it writes its results — its own section of
docs/benchmarks.md, between its two markers, so each benchmark rewrites only its own numbers and the prose
around them stays.

Importing this module puts the code measured first on `sys.path`: this repository, or the checkout named by
BXSYNC_BENCH_CODE (an earlier commit's, so that `bench/goals.py` measures it with today's benchmarks: the
stack, `manage.py serve` and the sandbox all come from there).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(os.environ.get("BXSYNC_BENCH_CODE") or Path(__file__).resolve().parent.parent).resolve()
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def section_write(path: Path, block: str, *, start: str, end: str, heading: str = "") -> None:
    """Put `block` (which begins with `start` and ends with `end`) in place of the text between those markers
    in `path`; where the markers are missing, append it at the end, under `heading` if one is given."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        text = before + block + rest.split(end, 1)[1]
    else:
        title = f"## {heading}\n\n" if heading else ""
        text = text.rstrip("\n") + "\n\n" + title + block + "\n"
    path.write_text(text)
