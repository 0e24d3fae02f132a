"""Creating and dropping whole PostgreSQL databases: for tests and benchmarks that need their own.

Example::

    url = await create_database("postgresql+asyncpg://postgres@127.0.0.1/test", "brm_bench", replace=True)
"""

from __future__ import annotations

import asyncpg
import sqlalchemy as sa


async def _admin(admin_url: str) -> asyncpg.Connection:
    url = sa.make_url(admin_url)
    return await asyncpg.connect(
        host=url.host or "127.0.0.1",
        port=url.port or 5432,
        user=url.username or "postgres",
        password=url.password,
        database=url.database or "postgres",
        timeout=5,
    )


async def create_database(admin_url: str, name: str, *, replace: bool = False) -> str:
    """Create database ``name`` on the server of ``admin_url``; returns its URL."""
    conn = await _admin(admin_url)
    try:
        if replace:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)


async def drop_database(admin_url: str, name: str) -> None:
    conn = await _admin(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
