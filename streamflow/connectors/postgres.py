"""PostgreSQL connections (asyncpg, the ``postgres`` extra): the keys, the pool, names and error kinds.

Shared by the ``postgres`` sink and source and enrich's ``postgres`` lookup.
asyncpg is imported when a component opens, so streamflow works without it.
"""

from __future__ import annotations

import importlib
from typing import Any, Literal

import orjson
from pydantic import Field, SecretStr, field_validator

from ..core.configs import ConfigModel

SslMode = Literal["disable", "prefer", "require", "verify-ca", "verify-full"]

#: SQLSTATE classes worth retrying: connection (08), rollback (40: serialization, deadlock),
#: insufficient resources (53), operator intervention (57: shutdown, cannot connect now).
TRANSIENT_CLASSES = ("08", "40", "53", "57")
#: SQLSTATE classes of a row the database refuses: data exception (22), integrity violation (23).
REFUSED_CLASSES = ("22", "23")


class PostgresConnection(ConfigModel):
    """Where the database is and how many connections to keep."""

    dsn: SecretStr = Field(description="libpq connection URL, e.g. postgresql://app@db:5432/shop (never "
                                       "logged; `${VAR}` welcome)")
    password: SecretStr | None = Field(None, description="password, if not in `dsn` (never logged)")
    ssl: SslMode | None = Field(None, description="TLS mode as libpq's sslmode (default: the dsn's, else "
                                                  "prefer)")
    pool_size: int = Field(4, ge=1, description="connections kept open at most")
    connect_timeout: float = Field(10.0, gt=0, description="seconds to establish a connection")

    @field_validator("password", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        """``${PGPASSWORD:-}`` of an unset variable is ``""``: the same as leaving the key out."""
        return None if value == "" else value


def asyncpg_module() -> Any:
    """The asyncpg module, or a clear error naming the extra that installs it."""
    try:
        return importlib.import_module("asyncpg")
    except ImportError:
        raise ValueError("PostgreSQL needs the asyncpg package: pip install 'streamflow[postgres]'") from None


async def _init_connection(conn: Any) -> None:
    """json and jsonb columns take and give Python values (encoded with orjson)."""
    for name in ("json", "jsonb"):
        await conn.set_type_codec(name, schema="pg_catalog", format="text",
                                  encoder=lambda v: orjson.dumps(v).decode(), decoder=orjson.loads)


async def create_pool(config: PostgresConnection) -> Any:
    """An asyncpg pool of up to ``pool_size`` connections (one opened now: a bad dsn fails here)."""
    asyncpg = asyncpg_module()
    options: dict[str, Any] = {}
    if config.password is not None:
        options["password"] = config.password.get_secret_value()
    if config.ssl is not None:
        options["ssl"] = config.ssl
    return await asyncpg.create_pool(config.dsn.get_secret_value(), min_size=1, max_size=config.pool_size,
                                     timeout=config.connect_timeout, init=_init_connection, **options)


def quote_ident(name: str) -> str:
    """``name`` as an SQL identifier; ``schema.table`` names are quoted part by part."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in name.split("."))


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a server error (None for others)."""
    state = getattr(exc, "sqlstate", None)
    return state if isinstance(state, str) else None


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: the connection failed or the server asked to try again."""
    state = sqlstate(exc)
    if state is not None:
        return state[:2] in TRANSIENT_CLASSES
    asyncpg = asyncpg_module()
    return isinstance(exc, (OSError, TimeoutError, asyncpg.InterfaceError))


def is_refused(exc: BaseException) -> bool:
    """A row (its values) the database refuses: retrying it cannot help."""
    state = sqlstate(exc)
    if state is not None:
        return state[:2] in REFUSED_CLASSES
    # asyncpg's own check of an argument against the column type (a str for an int …)
    return isinstance(exc, (TypeError, ValueError)) or type(exc).__name__ == "DataError"


async def table_columns(conn: Any, table: str) -> list[tuple[str, str, bool]]:
    """``(name, type, generated)`` of each column of ``table`` in order (generated: identity or computed)."""
    rows = await conn.fetch(
        "SELECT attname, format_type(atttypid, atttypmod) AS type, "
        "(attidentity <> '' OR attgenerated <> '') AS generated "
        "FROM pg_attribute WHERE attrelid = $1::text::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        quote_ident(table))
    if not rows:
        raise ValueError(f"table {table!r} has no columns")
    return [(r["attname"], r["type"], r["generated"]) for r in rows]
