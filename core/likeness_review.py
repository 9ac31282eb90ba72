"""Likeness on every result: the worker's picture scored against the person's original selfie (the identity
anchor of its edit tree), recorded on its node, said in its caption, and — for a model's picture that lost the
face — one more try with a stronger identity instruction, the better of the two kept.

Scoring runs in the bounded image-work pool (`core.intake_pool.Intake`, reached through `FaceScorer`), never on
the event loop. It is a courtesy, not a step a picture waits on for long: any failure (a picture it cannot read,
the pool stopping a worker, a wait past `SCORE_WAIT_S`) is logged and the picture goes out unscored.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from core import texts
from core.config import LikenessSettings
from core.likeness import GroupMatch, LikenessError, NoFace, Score
from core.ports import ImageStore, LikenessStatus, LikenessStore, Node

log = logging.getLogger(__name__)

SCORE_WAIT_S = 20.0  # the most a picture's delivery waits for its score (the pool may be busy with photos)

# A picture's likeness as the worker knows it: a score, no face (in the picture or in the selfie), a group
# picture's members, or None when it was not (or could not be) scored.
Verdict = Score | NoFace | list[GroupMatch] | None


class FaceScorer(Protocol):
    """Likeness work off the event loop (`core.intake_pool.Intake` is one)."""

    async def likeness(self, image: bytes, reference: bytes) -> Score | NoFace: ...

    async def match_group(self, picture: bytes, selfies: Mapping[str, bytes]) -> list[GroupMatch]: ...


class ReviewStore(LikenessStore, Protocol):
    async def get_node(self, node_id: int) -> Node | None: ...


@dataclass(frozen=True)
class Member:
    """One person in a group picture: what to call them, whose photo it is, and the photo."""

    name: str
    node: Node


class LikenessReview:
    """Scores results, decides on the one retry, records the scores and words the caption's likeness line."""

    def __init__(self, *, scorer: FaceScorer, store: ReviewStore, images: ImageStore,
                 settings: LikenessSettings | None = None, wait_s: float = SCORE_WAIT_S) -> None:
        self.scorer = scorer
        self.store = store
        self.images = images
        self.settings = settings or LikenessSettings()
        self.wait_s = wait_s

    # -- scoring ---------------------------------------------------------------------------------

    async def anchor(self, node: Node) -> bytes | None:
        """The original selfie of `node`'s edit tree (for an edit of an edit, still the first photo); None when
        the tree grows from a group picture (no one face to keep) or the photo is gone."""
        root = node if node.root_id is None else await self.store.get_node(node.root_id)
        if root is None or root.kind != "photo":
            return None
        try:
            return await self.images.get(root.image_sha)
        except (OSError, LookupError) as exc:  # its file went (a /forget racing the job): nothing to compare
            log.info("likeness: the selfie of node %s could not be read (%s)", node.id, type(exc).__name__)
            return None

    async def score(self, image: bytes, anchor: bytes | None) -> Score | NoFace | None:
        """`image` against the selfie; None (logged) when it could not be scored in time."""
        if anchor is None:
            return None
        try:
            async with asyncio.timeout(self.wait_s):
                return await self.scorer.likeness(image, anchor)
        except (LikenessError, RuntimeError, TimeoutError, OSError) as exc:
            log.warning("likeness: a result could not be scored (%s: %s); delivered unscored",
                        type(exc).__name__, exc)
            return None

    async def match(self, picture: bytes, members: Sequence[Member]) -> list[GroupMatch] | None:
        """Each member's selfie against their best face in a group picture (keyed by their place, "0", "1"…)."""
        try:
            selfies = {str(i): await self.images.get(m.node.image_sha) for i, m in enumerate(members)}
            async with asyncio.timeout(self.wait_s):
                return await self.scorer.match_group(picture, selfies)
        except (LikenessError, RuntimeError, TimeoutError, OSError) as exc:
            log.warning("likeness: a group picture could not be scored (%s: %s); delivered unscored",
                        type(exc).__name__, exc)
            return None

    # -- acting on it ----------------------------------------------------------------------------

    def wants_retry(self, verdict: Verdict) -> bool:
        """A picture under `[likeness] retry_below` (a picture with no face counts as 0%) is worth one more try."""
        threshold = self.settings.retry_below
        if not threshold:
            return False
        if isinstance(verdict, Score):
            return verdict.percent < threshold
        return isinstance(verdict, NoFace) and verdict.which == "image"

    @staticmethod
    def better(retried: Verdict, first: Verdict) -> bool:
        """Whether the retried picture keeps the face better than the first (a tie keeps the first)."""
        if not isinstance(retried, Score):
            return False
        return not isinstance(first, Score) or retried.percent > first.percent

    # -- recording -------------------------------------------------------------------------------

    async def record(self, node: Node, verdict: Verdict, members: Sequence[Member] = ()) -> Node:
        """Store the verdict on the node (a group's per member); returns the node as now stored. A failure to
        record is logged: the picture still goes out."""
        try:
            if isinstance(verdict, Score):
                await self.store.set_likeness(node.id, "scored", verdict.percent)
                return _with(node, "scored", verdict.percent)
            if isinstance(verdict, NoFace):
                status: LikenessStatus = "no_face" if verdict.which == "image" else "no_reference"
                await self.store.set_likeness(node.id, status)
                return _with(node, status, None)
            if isinstance(verdict, list):
                await self.store.set_member_likeness(node.id, _per_owner(verdict, members))
        except Exception as exc:  # the score is a courtesy: never the reason a paid picture is lost
            log.warning("likeness: the score of node %s could not be recorded (%s)", node.id, type(exc).__name__)
        return node

    # -- what people read ------------------------------------------------------------------------

    def line(self, node: Node, verdict: Verdict = None, members: Sequence[Member] = (),
             *, name_people: bool = True) -> str | None:
        """The caption's likeness line, or None (not shown, not scored, or the selfie had no face to keep)."""
        if not self.settings.show:
            return None
        if isinstance(verdict, list):
            names = [m.name for m in members]
            recognisable = [names[int(m.member)] for m in verdict
                            if isinstance(m.result, Score) and m.result.same_person and int(m.member) < len(names)]
            scorable = sum(1 for m in verdict if not (isinstance(m.result, NoFace) and m.result.which == "reference"))
            if not scorable:
                return None
            return texts.group_likeness(recognisable if name_people else [], len(recognisable), scorable)
        return note(node)


def note(node: Node) -> str | None:
    """A scored picture's likeness in a few words ("face kept 87%", "no face found"); None otherwise."""
    if node.likeness_status == "scored" and node.likeness is not None:
        return texts.face_kept(round(node.likeness))
    if node.likeness_status == "no_face":
        return texts.no_face_found()
    return None


def _with(node: Node, status: LikenessStatus, percent: float | None) -> Node:
    return replace(node, likeness=percent, likeness_status=status)


def _per_owner(matches: Sequence[GroupMatch], members: Sequence[Member]) -> dict[str, float | None]:
    """A group's scores by whose photo each was (one person's /fuse album: their best)."""
    best: dict[str, float | None] = {}
    for match in matches:
        index = int(match.member)
        if index >= len(members):
            continue
        owner = members[index].node.owner
        percent = float(match.result.percent) if isinstance(match.result, Score) else None
        known = best.get(owner)
        best[owner] = percent if known is None or (percent is not None and percent > known) else known
    return best
