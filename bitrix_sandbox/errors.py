"""The one error type of the emulated portals: REST calls and the OAuth server answer it alike."""

from __future__ import annotations

from typing import Any


class RestError(Exception):
    """A Bitrix error answer: HTTP status + ``error`` code (string or sale's numeric) + description.

    The same envelope serves REST methods and ``/oauth/token/`` (settings/oauth/error-codes.md:
    ``{"error", "error_description"}``)."""

    def __init__(self, status: int, error: str | int, description: str) -> None:
        super().__init__(f"{status} {error}: {description}")
        self.status = status
        self.error = error
        self.description = description

    def body(self) -> dict[str, Any]:
        """The JSON error envelope."""
        return {"error": self.error, "error_description": self.description}
