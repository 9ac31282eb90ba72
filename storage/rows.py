"""Rows as core's entities, the same for both databases (sqlite3.Row and asyncpg.Record are read by name)."""

from __future__ import annotations

import json
from typing import Any

from core.ports import Job, Node
from core.requests import ReplyTarget

NODE_COLUMNS = ("id, platform, chat_id, user_id, parent_id, root_id, kind, image_sha, mime, style, "
                "instruction, engine, model, commentary, depth, created_at, image_size, owner_id, likeness, "
                "likeness_status")
PARTY_COLUMNS = "id, platform, chat_id, host_id, style, theme, status, lobby_message, reply_to, deadline"
JOB_COLUMNS = ("id, platform, chat_id, user_id, kind, payload, target, status, attempts, result_node, "
               "delivered_message, error, created_at, pictures, result_nodes, delivering_at")


def node_from_row(row: Any) -> Node:
    return Node(id=row["id"], platform=row["platform"], chat_id=row["chat_id"], user_id=row["user_id"],
                parent_id=row["parent_id"], root_id=row["root_id"], kind=row["kind"],
                image_sha=row["image_sha"], mime=row["mime"], style=row["style"],
                instruction=row["instruction"], engine=row["engine"], model=row["model"],
                commentary=row["commentary"], depth=row["depth"], created_at=row["created_at"],
                image_size=row["image_size"], owner_id=row["owner_id"], likeness=row["likeness"],
                likeness_status=row["likeness_status"])


def without_pictures(payload: dict[str, Any], result: int | None, doomed: set[int]) -> dict[str, Any]:
    """A job's payload with nothing left about deleted pictures: their portraits (a name and a photo) and,
    for a job made from or making one of them, its words (an instruction or a theme may name them)."""
    kept = dict(payload)
    if isinstance(kept.get("portraits"), list):
        kept["portraits"] = [p for p in kept["portraits"] if int(p[1]) not in doomed]
    if kept.get("node") in doomed or result in doomed:
        for words in ("instruction", "theme"):
            if words in kept:
                kept[words] = ""
    return kept


def job_from_row(row: Any) -> Job:
    return Job(id=row["id"], platform=row["platform"], chat_id=row["chat_id"], user_id=row["user_id"],
               kind=row["kind"], payload=json.loads(row["payload"]),
               target=ReplyTarget.from_json(json.loads(row["target"])), status=row["status"],
               attempts=row["attempts"], result_node=row["result_node"],
               delivered_message=row["delivered_message"], error=row["error"], created_at=row["created_at"],
               pictures=row["pictures"], delivering_at=row["delivering_at"],
               result_nodes=tuple(int(n) for n in (row["result_nodes"] or "").split(",") if n.isdigit()))
