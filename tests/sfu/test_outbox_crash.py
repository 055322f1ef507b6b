"""The outbox survives `kill -9` (issue 11): a process reporting events through it is killed
mid-stream; after a restart, every event whose `report` had returned is delivered, and the
control plane (which applies by event id) applies each exactly once."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import textwrap
from collections import Counter
from pathlib import Path

from aiohttp import web

from control_api.app import start_site
from sfu.events import HttpDelivery
from sfu.outbox import Backoff, Outbox

WRITER = textwrap.dedent("""
    import asyncio, sys
    from datetime import UTC, datetime
    from sfu.events import HttpDelivery, VisitEvent
    from sfu.outbox import Backoff, Outbox

    async def main(path, url):
        outbox = await Outbox.open(path, HttpDelivery(url, "secret"), backoff=Backoff(base=0.01, cap=0.05))
        n = 0
        while True:
            n += 1
            await outbox.report(VisitEvent("visit-1", "participant_joined", datetime.now(UTC),
                                           participant="visitor", event_id=f"ev-{n:06d}"))
            print(f"ev-{n:06d}", flush=True)  # report returned: the event is on disk
            await asyncio.sleep(0.002)

    asyncio.run(main(sys.argv[1], sys.argv[2]))
""")

REPO = Path(__file__).resolve().parents[2]


class ControlPlane:
    """Applies events by id, as /v1/internal/media-events does; answers 503 now and then."""

    def __init__(self) -> None:
        self.received: list[str] = []
        self.acknowledged: list[str] = []  # answered 2xx
        self.applied: Counter[str] = Counter()
        self.rng = random.Random(11)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.received.append(body["event_id"])
        if self.rng.random() < 0.3:
            return web.json_response({"detail": "database restarting"}, status=503)
        duplicate = body["event_id"] in self.applied
        if not duplicate:
            self.applied[body["event_id"]] += 1
        self.acknowledged.append(body["event_id"])
        return web.json_response({"accepted": True, "duplicate": duplicate})


async def test_events_reported_before_a_sigkill_are_delivered_after_the_restart(tmp_path: Path) -> None:
    plane = ControlPlane()
    app = web.Application()
    app.router.add_post("/v1/internal/media-events", plane.handle)
    runner, port = await start_site(app, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{port}"
    path = tmp_path / "outbox.sqlite3"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", WRITER, str(path), url, stdout=asyncio.subprocess.PIPE,
        cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    reported: list[str] = []
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(30):
            while len(reported) < 300:
                line = await proc.stdout.readline()
                assert line, "the writer stopped"
                reported.append(line.decode().strip())
        proc.send_signal(signal.SIGKILL)  # mid-stream: reporting, sending, retrying
        await proc.wait()
        assert proc.returncode == -signal.SIGKILL
        reported += [line.decode().strip() for line in (await proc.stdout.read()).splitlines()]
        before_restart = len(plane.applied)

        outbox = await Outbox.open(path, HttpDelivery(url, "secret"), backoff=Backoff(base=0.01, cap=0.05))
        replayed = outbox.replayed
        assert await outbox.drained(30)
        await outbox.close(1)
    finally:
        if proc.returncode is None:
            proc.kill()
        await runner.cleanup()
    twice = len(plane.acknowledged) - len(set(plane.acknowledged))
    print(f"reported {len(reported)}, applied before the kill {before_restart}, replayed after restart {replayed}, "
          f"attempts {len(plane.received)}, acknowledged twice {twice}")
    assert replayed > 0  # the kill really left events behind
    assert set(reported) <= set(plane.applied)  # every event whose report returned
    assert all(count == 1 for count in plane.applied.values())  # applied once each
    # Redelivered at most: the event in flight when the process died (taken, not yet deleted).
    acked = plane.acknowledged
    assert len(acked) - len(set(acked)) <= 1
    # And in order: the first time each event reached the control plane follows the report order.
    first_seen = list(dict.fromkeys(plane.received))
    assert first_seen == sorted(first_seen)
