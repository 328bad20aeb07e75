"""Status stores: ``memory://`` (in-process) and ``redis://`` / ``rediss://``."""

from __future__ import annotations

from taskq.errors import ConfigurationError
from taskq.stores.base import DEFAULT_TTL, NO_RESULT, StatusStore
from taskq.urls import mask_url, scheme_of

__all__ = ["DEFAULT_TTL", "NO_RESULT", "StatusStore", "store_from_url"]


def store_from_url(
    url: str, *, ttl: float | None = DEFAULT_TTL, prefix: str = "taskq"
) -> StatusStore:
    scheme = scheme_of(url)
    if scheme == "memory":
        from taskq.stores.memory import MemoryStore

        return MemoryStore(ttl=ttl)
    if scheme in ("redis", "rediss"):
        from taskq.stores.redis import RedisStore

        return RedisStore(url, ttl=ttl, prefix=prefix)
    raise ConfigurationError(
        f"unsupported store URL {mask_url(url)!r}: use memory:// or redis://host:6379/0"
    )
