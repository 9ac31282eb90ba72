"""The persistence interfaces core needs; `storage/` implements them.

Core owns these shapes so the use cases never see SQL or file paths.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from core.errors import PixmeError
from core.requests import ReplyTarget
from core.send_slots import SendRule

NodeKind = Literal["photo", "style", "edit", "fuse"]
JobStatus = Literal["queued", "running", "done", "delivered", "failed", "cancelled"]
UNFINISHED: tuple[JobStatus, ...] = ("queued", "running", "done")
# A picture's likeness: scored, no face found in it, or none in the selfie it is compared with.
LikenessStatus = Literal["scored", "no_face", "no_reference"]


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
    image_size: str | None = None  # the output size the model was asked for (prices differ by size)
    owner_id: str | None = None  # a photo's sender (not always who asked); None for pictures the bot made
    likeness: float | None = None  # 0-100: how recognisably it keeps the selfie's face (core/likeness.py)
    likeness_status: LikenessStatus | None = None  # None: not scored

    @property
    def owner(self) -> str:
        """Whose photo this is (rows from before senders were recorded: who asked)."""
        return self.owner_id or self.user_id


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
    image_size: str | None = None
    owner_id: str | None = None  # for a photo: who sent it
    inputs: tuple[Node, ...] = ()  # for a group picture: the photos it was fused from


class SourceGone(PixmeError, LookupError):
    """A picture's parent or one of its photos was deleted (a /forget) while it was being made."""


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
    pictures: int = 1  # how many pictures it makes (variants, a style pack): it counts and is priced as that many
    result_nodes: tuple[int, ...] = ()  # every picture it made, in order (result_node is the first)
    # When its result was last handed to the platform; set with no delivery recorded, the job is in doubt.
    delivering_at: float | None = None


# "starting": taken by the one press or deadline that starts it, while the host's limits are checked (then
# "started", or back to "open" when a press is refused, or "closed" when a deadline is).
PartyStatus = Literal["open", "starting", "started", "cancelled", "closed"]


@dataclass(frozen=True)
class Member:
    """A party member; `node_id` is the photo node of the selfie they brought (None: not yet)."""

    user_id: str
    name: str
    node_id: int | None = None


@dataclass(frozen=True)
class Party:
    id: int
    platform: str
    chat_id: str
    host_id: str
    style: str
    theme: str
    status: PartyStatus
    lobby_message: str | None
    reply_to: str | None
    deadline: float
    members: tuple[Member, ...] = ()

    @property
    def ready(self) -> tuple[Member, ...]:
        """Members who have brought a selfie."""
        return tuple(m for m in self.members if m.node_id is not None)

    def member(self, user_id: str) -> Member | None:
        return next((m for m in self.members if m.user_id == user_id), None)


Delivery = Literal["photo", "file", "both"]
PreferenceScope = Literal["person", "chat"]
MAX_PERSONA_CHARS = 2000


@dataclass(frozen=True)
class Preferences:
    """A person's own choices (or a group's defaults set by its admins); None means "not chosen"."""

    model: str | None = None
    aspect_ratio: str | None = None
    image_size: str | None = None
    delivery: Delivery | None = None
    persona: str = ""  # at most MAX_PERSONA_CHARS; only people have one
    language: str | None = None  # chosen with /language (None: follow the app's language)
    variants: int | None = None  # candidates one request makes (None: the operator's `[gemini] variants`)

    def over(self, fallback: Preferences) -> Preferences:
        """These choices, with `fallback`'s wherever these are unset."""
        return Preferences(
            model=self.model or fallback.model,
            aspect_ratio=self.aspect_ratio or fallback.aspect_ratio,
            image_size=self.image_size or fallback.image_size,
            delivery=self.delivery or fallback.delivery,
            persona=self.persona or fallback.persona,
            language=self.language or fallback.language,
            variants=self.variants or fallback.variants,
        )


class History(Protocol):
    async def add_node(self, node: NewNode) -> Node: ...

    async def get_node(self, node_id: int) -> Node | None: ...

    async def node_for_message(self, platform: str, chat_id: str, message_id: str) -> Node | None: ...

    async def link_message(self, node: Node, message_id: str) -> None: ...

    async def latest_photo(self, platform: str, chat_id: str, user_id: str) -> Node | None: ...


class JobStore(Protocol):
    async def add_job(self, platform: str, chat_id: str, user_id: str, kind: str,
                      payload: dict[str, Any], target: ReplyTarget, *, pictures: int = 1) -> Job:
        """Persist a queued job; `pictures`: how many pictures it will make (and count as)."""
        ...

    async def get_job(self, job_id: int) -> Job | None: ...

    async def update_job(self, job_id: int, *, status: JobStatus | None = None,
                         result_node: int | None = None, delivered_message: str | None = None,
                         error: str | None = None, attempt: bool = False,
                         result_nodes: tuple[int, ...] | None = None, pictures: int | None = None,
                         extra_calls: int | None = None, delivering: bool = False) -> None:
        """`result_nodes`: every picture a job made, in order; `pictures`: how many it made after all (fewer
        than asked when some could not be made), which is what it counts as; `extra_calls`: engine calls it made
        beyond its pictures (a likeness retry), priced in the spend but never counted as pictures; `delivering`:
        its result is about to be handed to the platform (the intent a resumed job finds, `Job.delivering_at`)."""
        ...

    async def finish_delivery(self, job_id: int, links: Sequence[tuple[Node, str]], message_id: str) -> None:
        """The job's result is out: link each message to the picture it shows and end the job as delivered, in one
        transaction (a crash leaves both or neither)."""
        ...

    async def unfinished_jobs(self) -> list[Job]: ...


@dataclass(frozen=True)
class QueueCounts:
    """Jobs waiting or running (anywhere), as admission counts them: one person's jobs, and pictures they will make
    in all, for the person, and in the chat."""

    person_jobs: int = 0
    pictures: int = 0
    person_pictures: int = 0
    chat_pictures: int = 0


class LeaseStore(JobStore, Protocol):
    """Jobs shared by many processes (PostgreSQL): claimed under a lease a heartbeat renews; a lease that runs out
    (its worker died) makes the job claimable again."""

    async def claim_jobs(self, owner: str, lease_s: float, platforms: Sequence[str], limit: int) -> list[Job]:
        """Claim up to `limit` next jobs for `owner` at once, fairly: the earliest turns (rounds) of people with
        nothing claimed anywhere, then the oldest, at most one per person; in that order. Fewer (or none) when
        the line has no more that may start now."""
        ...

    async def queue_positions(self, job_ids: Sequence[int]) -> dict[int, int]:
        """Where each of `job_ids` still unfinished is: its place among the jobs waiting anywhere (1 = next, in the
        order claims take them: round, then arrival), or 0 once claimed. Jobs that are over are left out."""
        ...

    async def renew_leases(self, owner: str, job_ids: Sequence[int], lease_s: float) -> set[int]:
        """Extend `owner`'s claims on these jobs; the ids it still holds unfinished (the rest were cancelled
        elsewhere, or their lease ran out and another worker has them)."""
        ...

    async def release_job(self, job_id: int, owner: str) -> Job | None:
        """Give up `owner`'s claim (an unfinished job becomes claimable again); the job as recorded (how it ended,
        if it did), None if it is gone."""
        ...

    async def cancel_jobs(self, platform: str, user_id: str, chat_id: str | None) -> list[Job]:
        """Record this person's unfinished jobs (in one chat, or everywhere) as cancelled; those jobs."""
        ...

    async def queue_counts(self, platform: str, chat_id: str, user_id: str) -> QueueCounts: ...

    async def queue_sizes(self) -> tuple[int, int]:
        """(waiting, claimed) jobs, across every process."""
        ...

    async def announce_jobs(self) -> None:
        """Wake the workers listening for new jobs."""
        ...

    async def listen_jobs(self, wake: Callable[[], None]) -> Callable[[], Awaitable[None]]:
        """Call `wake` whenever jobs are announced; returns what stops listening."""
        ...

    async def run_alone(self, chore: str, every_s: float, run: Callable[[], Awaitable[object]]) -> bool:
        """Run `run` if no other process is running `chore` and it has not run for `every_s`; whether it ran."""
        ...


class Usage(Protocol):
    async def count_delivered(self, since: float, *, platform: str | None = None,
                              user_id: str | None = None, chat_id: str | None = None) -> int:
        """Pictures delivered since `since` (a job that made several counts each)."""
        ...

    async def job_counts(self, since: float) -> dict[str, int]: ...

    async def delivered_by_model(self, since: float) -> dict[tuple[str, str], int]:
        """Pictures delivered since `since`, by (model, output size); "" where either is unknown. A job that made
        several counts each."""
        ...

    async def extra_calls_by_model(self, since: float) -> dict[tuple[str, str], int]:
        """Engine calls beyond the pictures (likeness retries) of jobs delivered since `since`, by (model, output
        size): they cost money, so spend counts them, but they are no one's pictures."""
        ...


class Privacy(Protocol):
    async def forget_person(self, platform: str, user_id: str) -> list[str]:
        """Delete the person's nodes, every node rooted in their photos or in a group picture they are in,
        their jobs, settings and party rows, and their name from other people's jobs; returns image
        hashes no node refers to any more."""
        ...

    async def unreferenced(self, shas: list[str]) -> list[str]:
        """Those of `shas` no node refers to any more (their files can go)."""
        ...

    async def purge_older_than(self, cutoff: float) -> list[str]: ...


class Reachability(Protocol):
    async def set_chat_blocked(self, platform: str, chat_id: str, blocked: bool) -> None: ...

    async def is_chat_blocked(self, platform: str, chat_id: str) -> bool: ...


class UpdateLog(Protocol):
    """Platform updates already taken (Telegram's update_id): each is handled once, whichever gateway got it."""

    async def record_update(self, update_id: int, *, pending: bool = False, stale_before: float = 0.0,
                            seen_at: float | None = None) -> bool:
        """Record the update as taken (at `seen_at`, a Unix time; now by default); True only for the first caller,
        in any process. `pending`: taken to be handled now (`settle_update` says how that ended); a pending record
        seen before `stale_before` (its gateway died handling it) is taken over."""
        ...

    async def settle_update(self, update_id: int, *, handled: bool, seen_at: float | None = None) -> None:
        """A pending update was handled (its record stays: redeliveries are skipped), or was not (the record is
        forgotten, if it is the one recorded at `seen_at`: the redelivery is handled)."""
        ...

    async def update_pending(self, update_id: int) -> bool | None:
        """True while the update is being handled (here or by another gateway), False once it was, None when it
        is not recorded."""
        ...

    async def prune_updates(self, before: float) -> int:
        """Forget updates recorded before `before` (a Unix time); how many were forgotten."""
        ...


class SendSlots(Protocol):
    """A platform's send limits, kept by every process together (core/send_slots.py)."""

    async def reserve_send(self, rules: Sequence[SendRule]) -> float:
        """Reserve one send under every rule at once; the seconds to wait before sending (0: now)."""
        ...

    async def push_sends(self, scopes: Sequence[str], seconds: float) -> None:
        """Nothing more is sent in these scopes for `seconds` (the platform answered 429 with retry_after)."""
        ...


class PartyStore(Protocol):
    async def add_party(self, platform: str, chat_id: str, host: Member, style: str, theme: str,
                        deadline: float, reply_to: str | None) -> Party | None:
        """The new open party, or None when the chat already has one."""
        ...

    async def get_party(self, party_id: int) -> Party | None: ...

    async def open_party(self, platform: str, chat_id: str) -> Party | None: ...

    async def party_for_lobby(self, platform: str, chat_id: str, message_id: str) -> Party | None: ...

    async def open_parties(self) -> list[Party]: ...

    async def set_party(self, party_id: int, *, status: PartyStatus | None = None,
                        lobby_message: str | None = None) -> None: ...

    async def move_party(self, party_id: int, status: PartyStatus, *, was: PartyStatus = "open") -> Party | None:
        """Give the party `status` if it has status `was`, in one statement (a compare-and-set); the party as it is
        then (its members at that moment), or None when it did not have status `was`: someone else (a press in
        another process, the deadline sweep) moved it first. Of two callers racing from "open", one wins."""
        ...

    async def put_member(self, party_id: int, member: Member) -> None: ...

    async def remove_member(self, party_id: int, user_id: str) -> bool: ...


class PreferenceStore(Protocol):
    async def get_preferences(self, scope: PreferenceScope, platform: str, owner_id: str) -> Preferences:
        """The stored choices, or an empty `Preferences` when nothing was chosen."""
        ...

    async def set_preferences(self, scope: PreferenceScope, platform: str, owner_id: str,
                              preferences: Preferences) -> None: ...

    async def recent_results(self, platform: str, chat_id: str, user_id: str, limit: int) -> list[Node]:
        """The person's latest pictures made by the bot in this chat, newest first."""
        ...


class LikenessStore(Protocol):
    async def set_likeness(self, node_id: int, status: LikenessStatus, percent: float | None = None) -> None:
        """Record a picture's likeness (`percent` only with "scored")."""
        ...

    async def set_member_likeness(self, node_id: int, scores: Mapping[str, float | None]) -> None:
        """A group picture's likeness per member (user id -> percent; None: their face was not found)."""
        ...

    async def member_likeness(self, node_id: int) -> dict[str, float | None]:
        """A group picture's members (user ids) and their likeness, as recorded."""
        ...

    async def likeness_by_style(self, since: float) -> dict[tuple[str, str], tuple[float, int]]:
        """Average likeness of pictures scored since `since`, by (model, style): (mean percent, how many)."""
        ...


class SharedFiles(Protocol):
    """Delivered pictures as the platform can show them again without an upload (Telegram's file_id)."""

    async def record_file(self, node: Node, platform: str, file_ref: str) -> None: ...

    async def shareable_results(self, platform: str, user_id: str, limit: int) -> list[tuple[Node, str]]:
        """The person's pictures made by the bot in any chat of `platform` that have a file reference there,
        newest first, each with that reference."""
        ...


@dataclass(frozen=True)
class ReplyToken:
    """A platform's short-lived credential for answering a request in place: Discord's interaction token, whose
    follow-ups show as the answer to a slash command for 15 minutes. Kept in the database so whichever process
    delivers the request's job can follow up, not only the one that received the command."""

    platform: str
    request_id: str  # the message that shows the request (what its answers reply to)
    secret: str
    expires_at: float  # unix time
    details: Mapping[str, Any] = field(default_factory=dict)  # what else sending needs (JSON values)
    delivered: bool = False  # the result is out: later posts go to the chat, not through the token


class ReplyTokens(Protocol):
    async def keep_reply_token(self, token: ReplyToken) -> None:
        """Store or replace the token for its request (and delete every expired one)."""
        ...

    async def reply_token(self, platform: str, request_id: str, now: float) -> ReplyToken | None:
        """The request's token while it lives at `now`; None if there is none or it has expired (then it is
        deleted)."""
        ...

    async def mark_reply_token_delivered(self, platform: str, request_id: str) -> None: ...

    async def drop_reply_token(self, platform: str, request_id: str) -> None: ...


@dataclass(frozen=True)
class Balance:
    """What a person may still have drawn: free pictures used today (held or delivered) and credits left."""

    free_used: int
    credits: int


@dataclass(frozen=True)
class Payment:
    """A Telegram Stars payment as recorded."""

    charge_id: str
    platform: str
    user_id: str
    stars: int
    images: int
    remaining: int  # credits of it neither spent nor held
    refunded: bool = False
    removed: int = 0  # unused credits its refund took back


class CreditStore(Protocol):
    """Payments and the units pictures hold, each change in one transaction."""

    async def balance(self, platform: str, user_id: str, since: float) -> Balance:
        """Free pictures held or spent since `since` (the day's start) and credits left."""
        ...

    async def add_job_holding(self, platform: str, chat_id: str, user_id: str, kind: str, payload: dict[str, Any],
                              target: ReplyTarget, *, free_daily: int, since: float, pictures: int = 1) -> Job | None:
        """Persist a job together with the units it holds, one per picture it makes (free pictures of today while
        fewer than `free_daily` are used, then credits of the oldest payments with some left); None, and nothing
        written, when the person has too few."""
        ...

    async def settle_hold(self, job_id: int, pictures: int) -> bool:
        """`pictures` of the job's pictures were delivered: that many of its units are spent, the rest come back.
        False if it held none (or was settled)."""
        ...

    async def return_hold(self, job_id: int) -> bool:
        """The job ended without a picture: its units come back (credits to their payments, unless refunded).
        False if it held none (or was settled)."""
        ...

    async def settle_ended_holds(self) -> tuple[int, int]:
        """Holds whose job ended while nobody settled them (a crash between the two): (spent, returned)."""
        ...

    async def record_payment(self, charge_id: str, platform: str, user_id: str, stars: int, images: int,
                             payload: str) -> bool:
        """Record a payment and credit its pictures, in one statement; False if this charge was recorded before."""
        ...

    async def get_payment(self, charge_id: str) -> Payment | None: ...

    async def refund_payment(self, charge_id: str) -> Payment | None:
        """Mark the payment refunded and take back its unused credits (once); the payment as it is now."""
        ...


class Store(History, JobStore, Usage, Privacy, Reachability, PartyStore, PreferenceStore, LikenessStore,
            SharedFiles, CreditStore, UpdateLog, ReplyTokens, SendSlots, Protocol):
    """Everything core keeps in the database."""

    async def ping(self) -> None:
        """Return once the database has shown it could record a job now; raise if it cannot (readiness)."""
        ...

    async def close(self) -> None: ...


class ImageStore(Protocol):
    """Content-addressed image bytes (SHA-256)."""

    async def put(self, data: bytes) -> str: ...

    async def get(self, sha: str) -> bytes: ...

    async def delete(self, sha: str) -> None: ...

    async def sweep_orphans(self, min_age_s: float) -> int:
        """Delete stored images no node refers to, older than `min_age_s` (a crash between writing a file
        and its node leaves one); returns how many."""
        ...
