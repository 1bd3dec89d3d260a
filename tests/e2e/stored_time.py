"""Time travel for restart tests: what a desk stored looks as if it had stopped an hour ago."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

# Timestamps kept as text in columns not declared DATETIME: the bus journal's dead letters.
TEXT_TIMES = {"dead": ("dead_at",)}


def an_hour_passes(data: Path) -> None:
    """Moves every stored time an hour back (outbox, inbox, leases, due times, dead letters),
    as if the desk had stayed stopped that long."""
    for path in data.glob("*.sqlite3"):
        with sqlite3.connect(path) as conn:
            conn.create_function("earlier", 1, _an_hour_earlier)
            for table in _tables(conn):
                names = [
                    column
                    for _, column, declared, *_ in conn.execute(f"PRAGMA table_info('{table}')")
                    if "DATETIME" in declared.upper() or column in TEXT_TIMES.get(table, ())
                ]
                if names:
                    moved = ", ".join(f"{name} = earlier({name})" for name in names)
                    conn.execute(f"UPDATE {table} SET {moved}")
        conn.close()


def _tables(conn: sqlite3.Connection) -> list[str]:
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    return [name for (name,) in rows if not name.startswith("sqlite_")]


def _an_hour_earlier(value: object) -> object:
    if not isinstance(value, str):
        return value
    try:
        moved = datetime.fromisoformat(value) - timedelta(hours=1)
    except ValueError:
        return value
    return moved.isoformat() if "T" in value else moved.strftime("%Y-%m-%d %H:%M:%S.%f")
