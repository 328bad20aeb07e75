"""Status stores: ``memory://`` (in-process), ``redis://`` / ``rediss://``,
``redis+sentinel://`` and ``postgresql://`` / ``postgres://``."""

from __future__ import annotations

from taskq.errors import ConfigurationError
from taskq.stores.base import DEFAULT_TTL, NO_RESULT, StatusStore
from taskq.urls import mask_url, scheme_of

__all__ = ["DEFAULT_TTL", "NO_RESULT", "StatusStore", "store_from_url"]


def store_from_url(
    url: str, *, ttl: float | None = DEFAULT_TTL, prefix: str = "taskq", schema: str | None = None
) -> StatusStore:
    """The store ``url`` names. ``prefix`` (the app's exchange) keeps apps apart: Redis
    key prefix, PostgreSQL schema (unless ``schema`` overrides it)."""
    scheme = scheme_of(url)
    if scheme == "memory":
        from taskq.stores.memory import MemoryStore

        return MemoryStore(ttl=ttl)
    if scheme in ("redis", "rediss"):
        from taskq.stores.redis import RedisStore

        return RedisStore(url, ttl=ttl, prefix=prefix)
    if scheme == "redis+sentinel":
        from taskq.stores.redis_sentinel import RedisSentinelStore

        return RedisSentinelStore(url, ttl=ttl, prefix=prefix)
    if scheme in ("postgresql", "postgres"):
        from taskq.stores.postgres import PostgresStore

        return PostgresStore(url, ttl=ttl, prefix=prefix, schema=schema)
    raise ConfigurationError(
        f"unsupported store URL {mask_url(url)!r}: use memory://, redis://host:6379/0, "
        "redis+sentinel://host:26379,host:26379/mymaster/0 or postgresql://host:5432/db"
    )
