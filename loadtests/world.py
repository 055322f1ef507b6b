"""The load-test facility a provisioning run built (loadtests/provision.py), as the JSON file the
locustfile and the capacity command read: who signs in as whom, which visits are live when."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Account:
    email: str
    password: str
    totp_secret: str | None = None  # staff in production sign in with an authenticator code too


@dataclass
class Kiosk:
    id: str
    secret: str


@dataclass
class LiveVisit:
    """A booked, paid social visit: its visitor and the kiosk of the resident's housing unit."""

    id: str
    starts_at: str
    ends_at: str
    visitor: Account
    kiosk: Kiosk


@dataclass
class World:
    target: str
    facility_id: str
    clock: str  # "test" (the demo/test clock was moved to the visits' start) or "real"
    visits: list[LiveVisit] = field(default_factory=list)
    bookers: list[Account] = field(default_factory=list)
    booking_residents: list[str] = field(default_factory=list)
    booking_length_minutes: int = 30
    officers: list[Account] = field(default_factory=list)
    investigators: list[Account] = field(default_factory=list)
    recordings: list[str] = field(default_factory=list)  # visit ids of finished, recorded visits (R3)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> World:
        raw: dict[str, Any] = json.loads(path.read_text())
        return cls(
            target=raw["target"], facility_id=raw["facility_id"], clock=raw["clock"],
            visits=[LiveVisit(id=v["id"], starts_at=v["starts_at"], ends_at=v["ends_at"],
                              visitor=Account(**v["visitor"]), kiosk=Kiosk(**v["kiosk"])) for v in raw["visits"]],
            bookers=[Account(**a) for a in raw.get("bookers", [])],
            booking_residents=list(raw.get("booking_residents", [])),
            booking_length_minutes=int(raw.get("booking_length_minutes", 30)),
            officers=[Account(**a) for a in raw.get("officers", [])],
            investigators=[Account(**a) for a in raw.get("investigators", [])],
            recordings=list(raw.get("recordings", [])))
