"""Backpressure: ONE limiter in ``Service`` for every surface (REST, OpenAI route, UI).

An answer is admitted at once into a slot (``max_concurrent_answers``) or a queue (``max_queued_answers``); when
both are full it is refused at once with ``Busy`` (HTTP 429 with ``Retry-After``), so overload costs the server
no more than the refusal. Admission is decided when the request arrives (before any response is sent), which is
what lets a streamed answer still get a clean 429 rather than a stream that ends with an error.
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass, field

from sotrag.app.config import LimitsConfig


class Busy(RuntimeError):
    """Every answer slot and queue place is taken (429); ``retry_after_s`` says when to try again."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class AnswerTimeout(RuntimeError):
    """The answer ran past the per-answer time limit; its engine requests were aborted."""


@dataclass
class Ticket:
    """One admitted answer: it holds a queue place until it gets a slot, then the slot; released exactly once."""

    limiter: AnswerLimiter
    has_slot: bool = False
    released: bool = False

    async def acquire_slot(self) -> None:
        """Wait (at most ``queue_timeout_s``) for a slot; ``Busy`` when none frees up in time."""
        lim = self.limiter
        try:
            await asyncio.wait_for(lim._slots.acquire(), timeout=lim.config.queue_timeout_s)
        except TimeoutError:
            raise Busy(
                f"the server is busy: no answer slot freed up within {lim.config.queue_timeout_s:g} s",
                lim.config.retry_after_s,
            ) from None
        if self.released:  # released while waiting (the request went away): give the slot straight back
            lim._slots.release()
            return
        self.has_slot = True
        lim.queued -= 1
        lim.running += 1

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        lim = self.limiter
        if self.has_slot:
            lim.running -= 1
            lim._slots.release()
        else:
            lim.queued -= 1


@dataclass
class AnswerLimiter:
    config: LimitsConfig
    running: int = 0
    queued: int = 0
    _slots: asyncio.Semaphore = field(init=False)

    def __post_init__(self) -> None:
        self._slots = asyncio.Semaphore(self.config.max_concurrent_answers)

    def check(self) -> None:
        """``Busy`` when every slot and queue place is taken (cheap: call it before any other work)."""
        c = self.config
        if self.running + self.queued >= c.max_concurrent_answers + c.max_queued_answers:
            raise Busy(
                f"the server is busy ({self.running} answers running, {self.queued} waiting); "
                f"try again in {c.retry_after_s} s",
                c.retry_after_s,
            )

    def admit(self, owner: object) -> Ticket:
        """A ticket for a new answer, or ``Busy``. The ticket is also released when ``owner`` is collected, so an
        answer whose response was never started (client gone before the body) cannot keep its place."""
        self.check()
        self.queued += 1
        ticket = Ticket(self)
        weakref.finalize(owner, ticket.release)
        return ticket
