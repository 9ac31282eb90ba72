"""(4) The edit tree at scale: reply lookup and node insert with 10k, 100k and 1M nodes stored.

Rows are bulk-loaded with plain sqlite3 into the real schema (made by `SqliteStore.open`); the timed
calls go through `SqliteStore` exactly as the studio makes them.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.common import Target, summary_ms
from core.ports import NewNode, Node
from storage.sqlite import SqliteStore

NODES_PER_CHAT = 20  # a chat keeps a few selfies and their edits
NODES_PER_TREE = 5  # a selfie, then four results made from it
PLATFORM = "telegram"


def _rows(start: int, stop: int, now: float) -> Iterator[tuple[Any, ...]]:
    """Node rows with ids start+1..stop, each shown in one message of its chat."""
    for node_id in range(start + 1, stop + 1):
        index = node_id - 1
        chat = index // NODES_PER_CHAT
        step = index % NODES_PER_TREE
        root = node_id - step
        yield (node_id, PLATFORM, str(100_000 + chat), str(100_000 + chat), None if step == 0 else node_id - 1,
               None if step == 0 else root, "photo" if step == 0 else "edit", f"{node_id * 2654435761:064x}",
               "image/jpeg", None if step == 0 else "add a crown", None if step == 0 else "gemini",
               None if step == 0 else "gemini-3.1-flash-image", "", step, now - (stop - node_id))


def _message_id(node_id: int) -> str:
    return str((node_id - 1) % NODES_PER_CHAT * 2 + 1)  # person and bot messages alternate


def _chat_id(node_id: int) -> str:
    return str(100_000 + (node_id - 1) // NODES_PER_CHAT)


def bulk_load(path: Path, start: int, stop: int) -> float:
    """Append nodes start+1..stop (and their message links) with executemany; returns seconds taken."""
    began = time.perf_counter()
    db = sqlite3.connect(path)
    db.execute("PRAGMA synchronous=OFF")
    now = time.time()
    with db:
        db.executemany(
            "INSERT INTO nodes (id, platform, chat_id, user_id, parent_id, root_id, kind, image_sha, mime, "
            "instruction, engine, model, commentary, depth, created_at) VALUES "
            "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            _rows(start, stop, now),
        )
        db.executemany(
            "INSERT INTO node_messages (platform, chat_id, message_id, node_id) VALUES (?, ?, ?, ?)",
            ((PLATFORM, _chat_id(n), _message_id(n), n) for n in range(start + 1, stop + 1)),
        )
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.execute("ANALYZE")
    db.close()
    return time.perf_counter() - began


async def _measure(store: SqliteStore, bulk: list[range], lookups: int, inserts: int,
                   rng: random.Random) -> dict[str, Any]:
    weights = [len(r) for r in bulk]
    picks = [rng.choice(r) for r in rng.choices(bulk, weights, k=lookups)]
    for node_id in picks[:20]:  # warm-up
        await store.node_for_message(PLATFORM, _chat_id(node_id), _message_id(node_id))
    lookup_times = []
    for node_id in picks:
        start = time.perf_counter()
        node = await store.node_for_message(PLATFORM, _chat_id(node_id), _message_id(node_id))
        lookup_times.append(time.perf_counter() - start)
        assert node is not None and node.id == node_id, "the reply resolved to the wrong node"
    insert_times = []
    for i in range(inserts):
        parent_id = rng.choice(picks)
        parent = Node(id=parent_id, platform=PLATFORM, chat_id=_chat_id(parent_id), user_id=_chat_id(parent_id),
                      parent_id=None, root_id=None, kind="photo", image_sha="0" * 64, mime="image/jpeg")
        new = NewNode(PLATFORM, parent.chat_id, parent.user_id, "edit", f"{i:064x}", "image/png", parent=parent,
                      instruction="add a crown", engine="gemini", model="gemini-3.1-flash-image",
                      commentary="Long live the queen.")
        start = time.perf_counter()
        node = await store.add_node(new)
        await store.link_message(node, f"bot-{node.id}")
        insert_times.append(time.perf_counter() - start)
    return {"lookup": summary_ms(lookup_times), "insert": summary_ms(insert_times)}


async def _run(quick: bool) -> dict[str, Any]:
    sizes = [1_000, 10_000] if quick else [10_000, 100_000, 1_000_000]
    lookups, inserts = (200, 100) if quick else (3000, 1000)
    rng = random.Random(4)
    figures: dict[str, Any] = {}
    targets: list[Target] = []
    with tempfile.TemporaryDirectory(prefix="pixme-bench-") as tmp:
        path = Path(tmp) / "pixme.sqlite3"
        store = await SqliteStore.open(path)
        await store.close()
        loaded = 0
        bulk: list[range] = []
        for size in sizes:
            load_s = bulk_load(path, loaded, size)
            bulk.append(range(loaded + 1, size + 1))
            store = await SqliteStore.open(path)
            try:
                measured = await _measure(store, bulk, lookups, inserts, rng)
            finally:
                await store.close()
            measured["bulk_load_s"] = round(load_s, 2)
            measured["db_mb"] = round(path.stat().st_size / 1_048_576, 1)
            figures[f"{size}_nodes"] = measured
            label = f"{size // 1000}k" if size < 1_000_000 else f"{size // 1_000_000}M"
            targets.append(Target(f"reply lookup p99 @ {label} nodes", measured["lookup"]["p99_ms"], 1, "ms"))
            targets.append(Target(f"node insert p99 @ {label} nodes", measured["insert"]["p99_ms"], 1, "ms"))
            loaded = _max_id(path)  # the timed inserts took the ids after the bulk-loaded ones
    first, last = figures[f"{sizes[0]}_nodes"], figures[f"{sizes[-1]}_nodes"]
    figures["growth_lookup_p50"] = round(last["lookup"]["p50_ms"] / first["lookup"]["p50_ms"], 2)
    figures["growth_insert_p50"] = round(last["insert"]["p50_ms"] / first["insert"]["p50_ms"], 2)
    figures["sizes"] = sizes
    return {"figures": figures, "targets": targets}


def _max_id(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("SELECT MAX(id) FROM nodes").fetchone()[0])
    finally:
        db.close()


def run(quick: bool) -> dict[str, Any]:
    return asyncio.run(_run(quick))
