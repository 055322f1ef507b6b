"""Both parties joining at the same moment each receive the other's media (S5's rejoin shares
this path): real aiortc clients through real signaling, the joins racing, repeated."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from tests.sfu.test_signaling import Stack, connect, now, stack  # noqa: F401  (fixtures)


async def test_two_parties_joining_at_once_both_get_media(stack: Stack) -> None:  # noqa: F811
    start, end = now() - timedelta(seconds=1), now() + timedelta(seconds=60)
    for n in range(3):
        visit = f"visit-race-{n}"
        visitor, resident = await asyncio.gather(
            connect(stack, stack.token(visit, "user-1", "visitor", start=start, end=end)),
            connect(stack, stack.token(visit, "resident-1", "resident", start=start, end=end)))
        try:
            for _ in range(80):
                if len(visitor.received["video"]) > 5 and len(resident.received["video"]) > 5:
                    break
                await asyncio.sleep(0.1)
            got = (len(visitor.received["video"]), len(resident.received["video"]))
            assert min(got) > 5, f"round {n}: frames received (visitor, resident) = {got}"
        finally:
            await visitor.close()
            await resident.close()
            await stack.sfu.disconnect(visit, "technical")
