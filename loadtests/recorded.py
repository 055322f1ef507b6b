"""Finished, recorded visits for the investigators' playback (R3): recordings exist only after a
visit ends, so a short load run would otherwise never play one. Used by loadtests/provision.py
when the target's clock is movable (demo or test mode): a social visit is booked, the clock moved
to its start, the kiosk checks the resident in (S6), both parties join as aiortc peers publishing
the pre-encoded media (loadtests/party.py), and after a few seconds of media an officer ends it
with the reason `technical` (S4). Then the recording search must list it (R1, R3).

Plain asyncio, no Locust: provisioning runs outside the load."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp

from loadtests.api import Api, ApiError
from loadtests.metrics import PartyMetrics
from loadtests.party import Media, Party, hold_visit

MEDIA_SECONDS = 3.0  # recorded after both parties are in (S1: media flows from the start)
START_TIMEOUT_S = 40.0  # booked to `in_progress`: joins, ICE, the media plane's `started` report
RECORDING_TIMEOUT_S = 60.0  # ended to listed in the search: the recorder closes, the API signs


class RecordingFailed(Exception):
    """The recorded visit could not be made: the provisioning run stops with the reason."""


@dataclass(frozen=True)
class RecordedVisit:
    visit_id: str
    visitor: Api  # signed-in clients of the parties and of the staff that end and find it
    kiosk: Api
    officer: Api
    reviewer: Api
    facility_id: str


def _media() -> Media:
    from loadtests.synthetic_media import encode_opus, encode_vp8

    return Media(vp8=encode_vp8(frames=90), opus=encode_opus(packets=150))


async def _wait_until(what: str, seconds: float, probe: Any) -> Any:
    """Poll the blocking `probe` (in a thread) until it returns something truthy."""
    deadline = time.monotonic() + seconds
    while True:
        got = await asyncio.to_thread(probe)
        if got:
            return got
        if time.monotonic() > deadline:
            raise RecordingFailed(f"{what} not within {seconds:.0f} s")
        await asyncio.sleep(0.5)


async def _end_after_media(v: RecordedVisit) -> None:
    """Once the media plane reports the visit started, let it record, then disconnect it (S4)."""
    await _wait_until("the visit in progress", START_TIMEOUT_S,
                      lambda: v.visitor.get(f"/v1/visits/{v.visit_id}")["status"] == "in_progress")
    await asyncio.sleep(MEDIA_SECONDS)
    await asyncio.to_thread(v.officer.post, f"/v1/visits/{v.visit_id}/disconnect",
                            {"reason": "technical", "note": "load test: a recorded visit for playback"})


async def record(v: RecordedVisit, media: Media | None = None) -> list[PartyMetrics]:
    """Hold the visit with both parties until the officer ends it; raises unless both got video."""
    api = v.visitor.base
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        holding = asyncio.create_task(hold_visit(http, api, v.visit_id, Party("visitor", v.visitor.token or ""),
                                                 Party("resident", v.kiosk.token or ""), media or _media(),
                                                 START_TIMEOUT_S + 30))
        try:
            await _end_after_media(v)
        except (RecordingFailed, ApiError) as exc:
            holding.cancel()
            raise RecordingFailed(f"visit {v.visit_id}: {exc}") from exc
        parties = await holding
    missing = [f"{p.side}: {p.error}" for p in parties if p.first_frame_s is None]
    if missing:
        raise RecordingFailed(f"visit {v.visit_id}: no media recorded ({'; '.join(missing)})")
    return parties


def wait_for_recording(v: RecordedVisit, since: datetime) -> dict[str, Any]:
    """The reviewer's search (R3) lists the ended visit once the recorder's manifest is signed."""
    query = f"/v1/facilities/{v.facility_id}/recordings?from={since.strftime('%Y-%m-%dT%H:%M:%SZ')}"
    deadline = time.monotonic() + RECORDING_TIMEOUT_S
    while True:
        found = [r for r in v.reviewer.get(query) if r["visit_id"] == v.visit_id]
        if found:
            row: dict[str, Any] = found[0]
            return row
        if time.monotonic() > deadline:
            raise RecordingFailed(f"visit {v.visit_id}: no recording listed within {RECORDING_TIMEOUT_S:.0f} s")
        time.sleep(0.5)
