"""One suspected poison event at a time, across all workers.

A worker that dies mid-call takes every transaction it had in flight with it, and each of them
counts the death against its budget: none can tell which one killed it. Were the suspects to run
side by side again, a bystander could die with the poison again and again and be put in the
exception queue as the poison (seen in the fault-injection suite under load). A suspect, a
transaction with a step whose earlier attempt died with its worker, runs only while it holds
this slot, so no two suspects share a crash: a bystander dies with a given poison once at most,
and the poison spends its budget alone.
"""

import contextlib
from collections.abc import AsyncIterator

from redis.asyncio import Redis
from redis.exceptions import LockError

SLOT_KEY = "concord:quarantine"


@contextlib.asynccontextmanager
async def admitted(redis: Redis, *, suspect: bool, hold_s: float) -> AsyncIterator[bool]:
    """Whether this run may make its calls now: at once when it is no suspect, else only while
    it holds the slot. A holder that dies keeps the slot for `hold_s` (the lease) at most."""
    if not suspect:
        yield True
        return
    # redis-py's lock: SET NX PX with a token, released only by the token's owner.
    slot = redis.lock(SLOT_KEY, timeout=hold_s, blocking=False)
    held = await slot.acquire()
    try:
        yield held
    finally:
        if held:
            # Expired under a run longer than the lease: another suspect may hold it now.
            with contextlib.suppress(LockError):
                await slot.release()
