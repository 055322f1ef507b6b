"""Drive a booked visit through the media plane's event reports, as a media node would."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

from tests.support import Api

_ids = itertools.count(1)


async def report(api: Api, visit_id: str, kind: str, at: datetime, **fields: Any) -> dict[str, Any]:
    body = {"event_id": f"ev-{next(_ids)}", "visit_id": visit_id, "kind": kind, "occurred_at": at.isoformat(), **fields}
    resp = await api.anonymous.post("/v1/internal/media-events", body,
                                    headers={"Authorization": f"Bearer {api.ctx.media_secret}"})
    answer: dict[str, Any] = resp.ok()
    return answer


async def run_visit(api: Api, visit: dict[str, Any], *, visitor: bool = True, resident: bool = True,
                    end: dict[str, Any] | None = None, connected_seconds: int | None = None) -> None:
    start = datetime.fromisoformat(visit["starts_at"])
    if visitor:
        await report(api, visit["id"], "participant_joined", start, participant="visitor")
    if resident:
        await report(api, visit["id"], "participant_joined", start + timedelta(seconds=5), participant="resident")
    if visitor and resident:
        await report(api, visit["id"], "started", start + timedelta(seconds=6))
    if end is not None:
        seconds = connected_seconds if connected_seconds is not None else visit["length_minutes"] * 60
        await report(api, visit["id"], "ended", start + timedelta(seconds=seconds), connected_seconds=seconds, **end)
