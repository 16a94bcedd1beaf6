"""The benchmarks' small runs use the end-to-end stack, shared with tests/e2e in one session."""

from tests.e2e.conftest import e2e, stack  # noqa: F401 - fixtures
