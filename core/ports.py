"""The persistence interfaces core needs; `storage/` implements them.

Core owns these shapes so the use cases never see SQL or file paths.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from core.requests import ReplyTarget

NodeKind = Literal["photo", "style", "edit", "fuse"]
JobStatus = Literal["queued", "running", "done", "delivered", "failed", "cancelled"]
UNFINISHED: tuple[JobStatus, ...] = ("queued", "running", "done")


@dataclass(frozen=True)
class Node:
    """One step in a chat's edit tree: a person's photo, or an image the bot made from its parent."""

    id: int
    platform: str
    chat_id: str
    user_id: str
    parent_id: int | None
    root_id: int | None  # the original selfie (a "photo" node); None for the photo itself
    kind: NodeKind
    image_sha: str
    mime: str
    style: str | None = None
    instruction: str | None = None
    engine: str | None = None
    model: str | None = None
    commentary: str = ""
    depth: int = 0  # 0 for a photo, 1 for its first result, …
    created_at: float = 0.0


@dataclass(frozen=True)
class NewNode:
    platform: str
    chat_id: str
    user_id: str
    kind: NodeKind
    image_sha: str
    mime: str
    parent: Node | None = None
    style: str | None = None
    instruction: str | None = None
    engine: str | None = None
    model: str | None = None
    commentary: str = ""


@dataclass(frozen=True)
class Job:
    """A request accepted for the engine, persisted before any work starts."""

    id: int
    platform: str
    chat_id: str
    user_id: str
    kind: str  # "style" | "edit" | "fuse"
    payload: dict[str, Any]
    target: ReplyTarget
    status: JobStatus
    attempts: int = 0
    result_node: int | None = None
    delivered_message: str | None = None
    error: str | None = None
    created_at: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


class History(Protocol):
    async def add_node(self, node: NewNode) -> Node: ...

    async def get_node(self, node_id: int) -> Node | None: ...

    async def node_for_message(self, platform: str, chat_id: str, message_id: str) -> Node | None: ...

    async def link_message(self, node: Node, message_id: str) -> None: ...


class JobStore(Protocol):
    async def add_job(self, platform: str, chat_id: str, user_id: str, kind: str,
                      payload: dict[str, Any], target: ReplyTarget) -> Job: ...

    async def get_job(self, job_id: int) -> Job | None: ...

    async def update_job(self, job_id: int, *, status: JobStatus | None = None,
                         result_node: int | None = None, delivered_message: str | None = None,
                         error: str | None = None, attempt: bool = False) -> None: ...

    async def unfinished_jobs(self) -> list[Job]: ...


class Usage(Protocol):
    async def count_delivered(self, since: float, *, platform: str | None = None,
                              user_id: str | None = None, chat_id: str | None = None) -> int: ...

    async def job_counts(self, since: float) -> dict[str, int]: ...

    async def delivered_by_model(self, since: float) -> dict[str, int]: ...


class Privacy(Protocol):
    async def forget_person(self, platform: str, user_id: str) -> list[str]: ...

    async def purge_older_than(self, cutoff: float) -> list[str]: ...


class Reachability(Protocol):
    async def set_chat_blocked(self, platform: str, chat_id: str, blocked: bool) -> None: ...

    async def is_chat_blocked(self, platform: str, chat_id: str) -> bool: ...


class Store(History, JobStore, Usage, Privacy, Reachability, Protocol):
    """Everything core keeps in the database."""

    async def close(self) -> None: ...


class ImageStore(Protocol):
    """Content-addressed image bytes (SHA-256)."""

    async def put(self, data: bytes) -> str: ...

    async def get(self, sha: str) -> bytes: ...

    async def delete(self, sha: str) -> None: ...
