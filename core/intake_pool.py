"""Decoding people's files where a hostile one costs its sender a refusal and nobody else anything.

`Intake.prepare` runs `core.intake.prepare` in a small pool of worker processes. Each decode gets a CPU
budget (RLIMIT_CPU, so a loaded machine does not refuse honest photos; a wall-clock ceiling backs it
up): past it the kernel stops the worker, the file is refused in one line, and a fresh worker takes its
place; the other workers, and the decodes in them, never notice. Before a file is sent to a worker its
header is read in the event loop (microseconds, `core.intake.peek`): a PNG or JPEG that would decode to
more than the per-picture budget is refused without decoding, and the rest wait until their decoded
bytes fit in the budget for decodes in flight. `turn` gives each person one download-and-decode at a
time, so one sender can hold at most one worker.

Workers are forked from multiprocessing's fork server (which has already imported Pillow and OpenCV),
not from this threaded process, and each is replaced after a large decode so the memory goes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import multiprocessing
import os
import signal
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Hashable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from core import i18n
from core.config import IntakeSettings
from core.i18n import _
from core.intake import (
    DecodeLimits,
    IntakeError,
    PreparedImage,
    check_decoded_bytes,
    check_size,
    peek,
    prepare,
)
from core.likeness import Embedding, GroupMatch, LikenessError, NoFace, Score, default_likeness

log = logging.getLogger(__name__)

LIKENESS_CPU_S = 1.0  # CPU budget per picture in a likeness request (~0.1 s each; the model loads in ~0.4 s)
LIKENESS_DECODED_BYTES = 2048 * 2048 * 3  # what one picture may take decoded (core.likeness.MAX_SIDE)
_NO_FACE = object()  # a remembered selfie with no face in it
REFERENCES_KEPT = 256  # selfies whose embedding the pool remembers (a person's results are scored against it)
MAX_TURNS_PER_PERSON = 4  # one decoding and three waiting; a fifth photo at once is refused
RECYCLE_AFTER_RSS = 384 * 1024 * 1024  # a worker whose peak memory passed this is replaced (memory back)
WALL_FACTOR, WALL_SLACK_S = 4.0, 5.0  # the wall-clock ceiling: budget × factor + slack
_MP = multiprocessing.get_context("forkserver")
# The fork server imports these once; every worker forked from it starts with them loaded (the face model too).
_MP.set_forkserver_preload(["__main__", "core.intake_pool", "core.likeness_preload"])


def too_costly_message() -> str:
    return _("That image takes far too long to open — please send a normal photo.")


def busy_message() -> str:
    return _("I'm still opening your other photos — please send this one again in a moment.")


# -- the worker process ------------------------------------------------------------------------------


def _worker_main(conn: Connection) -> None:
    """Decode requests one at a time until the pipe closes. Each request raises the CPU limit to what this
    process has used plus the budget; going past it ends the process (SIGXCPU), which the parent sees."""
    import resource

    import cv2

    cv2.setNumThreads(1)  # the pool is the parallelism; a decode must not fan out over every core
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a killed worker leaves no core file
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        if isinstance(request[0], str):  # ("likeness" | "group", budget_s, ...): see Intake.likeness
            data, budget_s = b"", request[1]
        else:
            data, max_px, limits, language, budget_s = request
        usage = resource.getrusage(resource.RUSAGE_SELF)
        _soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
        soft = math.ceil(usage.ru_utime + usage.ru_stime + budget_s)
        resource.setrlimit(resource.RLIMIT_CPU, (soft if hard == resource.RLIM_INFINITY else min(soft, hard), hard))
        reply: tuple[str, Any]
        try:
            if isinstance(request[0], str):
                reply = ("ok", _likeness_work(request))
            else:
                with i18n.speaking(language):
                    reply = ("ok", prepare(data, max_px=max_px, limits=limits))
        except LikenessError as refusal:
            reply = ("refused", str(refusal))
        except IntakeError as refusal:
            reply = ("refused", refusal.message)
        except Exception as exc:  # a bug, not the file's fault: say so in the parent's log
            reply = ("error", f"{type(exc).__name__}: {exc}")
        del data, request
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux counts it in KiB
        try:
            conn.send((*reply, peak))
        except (OSError, EOFError):
            return


def _likeness_work(request: tuple[Any, ...]) -> Any:
    """In a worker: one likeness score (and the reference's embedding, for the parent to keep) or a group match."""
    likeness = default_likeness()
    if request[0] == "likeness":
        _kind, _budget, image, reference = request
        if isinstance(reference, bytes):
            found = likeness.embed_bytes(reference)
            reference = found[0] if found else None
        return (likeness.score(image, reference) if reference is not None else NoFace("reference")), reference
    _kind, _budget, picture, selfies = request
    return likeness.match_group(picture, selfies)


class _Killed(Exception):
    """The worker died or was stopped mid-decode."""


class _Worker:
    """One process and its pipe; used by one thread at a time."""

    def __init__(self) -> None:
        ours, theirs = _MP.Pipe()
        self.process = _MP.Process(target=_worker_main, args=(theirs,), name="pixme-intake", daemon=True)
        self.process.start()
        theirs.close()  # only the worker holds its end, so its death reads as end-of-file here
        self.conn = ours

    def exchange(self, request: tuple[Any, ...], wall_s: float) -> tuple[str, Any, int]:
        try:
            self.conn.send(request)
            if not self.conn.poll(wall_s):
                log.info("intake: a decode passed %.0f s of wall-clock time; stopping its worker", wall_s)
                raise _Killed("wall clock")
            reply: tuple[str, Any, int] = self.conn.recv()
            return reply
        except (EOFError, OSError) as exc:
            raise _Killed(type(exc).__name__) from None

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.close()
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)

    def exit_reason(self) -> str:
        self.process.join(1)
        code = self.process.exitcode
        if code is not None and code < 0:
            with contextlib.suppress(ValueError):
                return signal.Signals(-code).name
        return f"exit code {code}"


# -- the pool, as the event loop sees it -------------------------------------------------------------


class _ByteBudget:
    """A semaphore counted in bytes: decodes in flight together claim at most `total`."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.free = total
        self._changed = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def claim(self, amount: int) -> AsyncIterator[None]:
        amount = min(amount, self.total)
        async with self._changed:
            await self._changed.wait_for(lambda: self.free >= amount)
            self.free -= amount
        try:
            yield
        finally:
            self.free += amount
            await asyncio.shield(self._notify())

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()


@dataclass
class _Turns:
    lock: asyncio.Lock
    holders: int = 0


class Intake:
    """Bounded, killable decoding for everything people send (see the module docstring)."""

    def __init__(self, settings: IntakeSettings | None = None) -> None:
        self.settings = settings = settings or IntakeSettings()
        self.limits = DecodeLimits(max_jpeg_scans=settings.max_jpeg_scans,
                                   max_decoded_bytes=settings.max_decoded_mb * 1024 * 1024)
        self._workers = settings.workers or max(2, (os.cpu_count() or 2) - 1)
        self._threads = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="intake")
        # Idle slots (None: not started yet); the semaphore lets at most that many decodes take one.
        self._idle: list[_Worker | None] = [None] * self._workers
        self._slots: asyncio.Semaphore | None = None
        self._memory: _ByteBudget | None = None
        self._turns: dict[Hashable, _Turns] = {}
        self._lock = threading.Lock()  # guards _idle between event-loop and pool threads
        self._closed = False
        # sha256 of a selfie -> its face's embedding (or _NO_FACE), most recently used last
        self._references: OrderedDict[str, Embedding | object] = OrderedDict()
        self.stopped: list[str] = []  # why each overrunning worker was stopped ("SIGXCPU", "wall clock")

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the workers now, so the first photo does not wait for them."""
        loop = asyncio.get_running_loop()
        workers = await asyncio.gather(*(loop.run_in_executor(self._threads, _Worker)
                                         for _ in range(self._workers)))
        with self._lock:
            for worker in workers:
                if None in self._idle and not self._closed:
                    self._idle[self._idle.index(None)] = worker
                else:
                    worker.stop()

    async def aclose(self) -> None:
        self._closed = True
        with self._lock:
            workers, self._idle = [w for w in self._idle if w is not None], []

        def stop_all() -> None:
            for worker in workers:
                worker.stop()

        await asyncio.get_running_loop().run_in_executor(None, stop_all)
        self._threads.shutdown(wait=False, cancel_futures=True)

    # -- per person ----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def turn(self, owner: Hashable) -> AsyncIterator[None]:
        """One download-and-decode at a time per `owner`; more than MAX_TURNS_PER_PERSON at once is refused."""
        turns = self._turns.get(owner)
        if turns is None:
            turns = self._turns[owner] = _Turns(asyncio.Lock())
        if turns.holders >= MAX_TURNS_PER_PERSON:
            raise IntakeError(busy_message())
        turns.holders += 1
        try:
            async with turns.lock:
                yield
        finally:
            turns.holders -= 1
            if turns.holders == 0:
                self._turns.pop(owner, None)

    # -- decoding ------------------------------------------------------------------------------

    async def prepare(self, data: bytes, *, max_px: int = 1024) -> PreparedImage:
        """`core.intake.prepare` within the budgets; refusals (IntakeError) are worded in the caller's language."""
        if self._closed:
            raise RuntimeError("intake is closed")
        check_size(data)
        declared = peek(data, max_px, self.limits.max_jpeg_scans)
        if declared is not None:  # refused from the header, before any decoding
            check_decoded_bytes(declared.decoded_bytes, declared.width, declared.height,
                                self.limits.max_decoded_bytes)
        # Formats we cannot size from their header claim the whole per-picture budget while they decode.
        claim = declared.decoded_bytes if declared is not None else self.limits.max_decoded_bytes
        if self._slots is None or self._memory is None:
            self._slots = asyncio.Semaphore(self._workers)
            self._memory = _ByteBudget(max(self.settings.decoding_mb * 1024 * 1024, self.limits.max_decoded_bytes))
        request = (data, max_px, self.limits, i18n.current(), self.settings.cpu_budget_s)
        async with self._memory.claim(claim), self._slots:
            loop = asyncio.get_running_loop()
            status, value = await loop.run_in_executor(self._threads, self._run, request)
        if status == "ok":
            assert isinstance(value, PreparedImage)
            return value
        if status == "refused":
            raise IntakeError(str(value))
        if status == "killed":
            raise IntakeError(too_costly_message())
        log.error("intake: the decoder failed: %s", value)
        raise IntakeError(_("That photo seems damaged or incomplete — please send it again."))

    # -- likeness ------------------------------------------------------------------------------

    async def likeness(self, image: bytes, reference: bytes) -> Score | NoFace:
        """`core.likeness` score of a picture against a selfie, in a worker process (dlib holds the GIL for
        ~0.1 s a picture: never on the event loop). The selfie's embedding is remembered here, so a
        person's later results cost one picture's work. LikenessError if a picture cannot be read."""
        key = hashlib.sha256(reference).hexdigest()
        known = self._references.get(key)
        if known is _NO_FACE:
            return NoFace("reference")
        ref = known if isinstance(known, Embedding) else reference
        result, embedding = await self._likeness_request(("likeness", LIKENESS_CPU_S * 2, image, ref), 2)
        self._references[key] = embedding if embedding is not None else _NO_FACE
        self._references.move_to_end(key)
        while len(self._references) > REFERENCES_KEPT:
            self._references.popitem(last=False)
        assert isinstance(result, Score | NoFace)
        return result

    async def match_group(self, picture: bytes, selfies: Mapping[str, bytes]) -> list[GroupMatch]:
        """`core.likeness.Likeness.match_group` in a worker process: each member's best face in the picture."""
        refs: dict[str, bytes | Embedding] = {}
        for member, selfie in selfies.items():
            known = self._references.get(hashlib.sha256(selfie).hexdigest())
            refs[member] = known if isinstance(known, Embedding) else selfie
        budget = LIKENESS_CPU_S * (4 + len(refs))  # the picture is searched for small faces: ~4 pictures' work
        matches = await self._likeness_request(("group", budget, picture, refs), 1 + len(refs))
        assert isinstance(matches, list)
        return matches

    async def _likeness_request(self, request: tuple[Any, ...], pictures: int) -> Any:
        if self._closed:
            raise RuntimeError("intake is closed")
        if self._slots is None or self._memory is None:
            self._slots = asyncio.Semaphore(self._workers)
            self._memory = _ByteBudget(max(self.settings.decoding_mb * 1024 * 1024, self.limits.max_decoded_bytes))
        claim = pictures * LIKENESS_DECODED_BYTES
        async with self._memory.claim(claim), self._slots:
            status, value = await asyncio.get_running_loop().run_in_executor(self._threads, self._run, request)
        if status == "ok":
            return value
        if status == "killed":
            raise LikenessError("scoring the likeness took too long")
        raise LikenessError(str(value))

    def _run(self, request: tuple[Any, ...]) -> tuple[str, Any]:
        """In a pool thread: take an idle worker (starting one if needed), decode, give it back or replace it."""
        with self._lock:
            worker = self._idle.pop() if self._idle else None
        try:
            if worker is not None and not worker.process.is_alive():
                worker.stop()
                worker = None
            if worker is None:
                worker = _Worker()
            budget_s = request[1] if isinstance(request[0], str) else self.settings.cpu_budget_s
            wall_s = budget_s * WALL_FACTOR + WALL_SLACK_S
            try:
                status, value, peak = worker.exchange(request, wall_s)
            except _Killed as stop:
                # The pipe can read as closed a moment before the process is reaped: wait for its exit code.
                reason = "wall clock" if str(stop) == "wall clock" else worker.exit_reason()
                worker.stop()
                worker = None
                self.stopped.append(reason)
                log.warning("intake: a decode was stopped (%s); its worker is replaced", reason)
                return "killed", reason
            if peak > RECYCLE_AFTER_RSS:
                worker.stop()
                worker = None
            return status, value
        finally:
            with self._lock:
                # Closed meanwhile, or one too many (a cancelled wait let another decode start a worker).
                surplus = self._closed or len(self._idle) >= self._workers
                if not surplus:
                    self._idle.append(worker)
            if surplus and worker is not None:
                worker.stop()
