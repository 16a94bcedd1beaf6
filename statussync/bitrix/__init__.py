"""Bitrix REST access for bxsync: the client, its errors, the shared rate limiter and PHP query encoding."""

from phpquery import http_build_query, parse_bracket_query, unflatten

from .client import BatchResult, BitrixClient, client_for
from .errors import (
    AuthError,
    BitrixError,
    NotFoundError,
    OperatingLimitError,
    PermanentError,
    PortalClosedError,
    PortalMovedError,
    RateLimitedError,
    TransientError,
    classify_error,
    portal_unreachable,
    redact,
)
from .ratelimit import (
    BucketStore,
    DatabaseBucketStore,
    GcraLimiter,
    MemoryBucketStore,
    RateLimiter,
    RedisBucketStore,
    limiter_for,
)

__all__ = [
    "AuthError",
    "BatchResult",
    "BitrixClient",
    "BitrixError",
    "BucketStore",
    "DatabaseBucketStore",
    "GcraLimiter",
    "MemoryBucketStore",
    "NotFoundError",
    "OperatingLimitError",
    "PermanentError",
    "PortalClosedError",
    "PortalMovedError",
    "RateLimitedError",
    "RateLimiter",
    "RedisBucketStore",
    "TransientError",
    "classify_error",
    "client_for",
    "http_build_query",
    "limiter_for",
    "parse_bracket_query",
    "portal_unreachable",
    "redact",
    "unflatten",
]
