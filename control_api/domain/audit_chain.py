"""The audit log's hash chain (R3, P1, P3, R4): pure functions, no database.

Each entry's digest covers its own fields and the previous entry's digest, so editing an entry
changes its digest, and removing or reordering entries breaks the next entry's link. The head
(last sequence number and digest, kept in its own row) catches the removal of the newest
entries. Anyone holding an exported head digest can later prove the log up to it is unchanged.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

GENESIS = "0" * 64


@dataclass(frozen=True)
class ChainedEntry:
    seq: int
    at: datetime
    action: str
    actor_id: str | None
    actor_role: str | None
    facility_id: str | None
    visit_id: str | None
    detail: dict[str, Any]
    prev_hash: str
    hash: str


def canonical_time(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def entry_digest(*, seq: int, at: datetime, action: str, actor_id: str | None, actor_role: str | None,
                 facility_id: str | None, visit_id: str | None, detail: dict[str, Any], prev_hash: str) -> str:
    body = json.dumps({"seq": seq, "at": canonical_time(at), "action": action, "actor_id": actor_id,
                       "actor_role": actor_role, "facility_id": facility_id, "visit_id": visit_id,
                       "detail": detail, "prev_hash": prev_hash},
                      sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(body.encode()).hexdigest()


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    entries: int
    head_hash: str
    problem: str | None = None
    bad_seq: int | None = None


def verify_chain(entries: Iterable[ChainedEntry], head_seq: int, head_hash: str) -> ChainReport:
    """Walk the entries in sequence order; the first break is reported."""
    prev, expected_seq, count = GENESIS, 1, 0
    for e in entries:
        if e.seq != expected_seq:
            return ChainReport(False, count, head_hash, f"entry {expected_seq} is missing (found {e.seq} next)",
                               expected_seq)
        if e.prev_hash != prev:
            return ChainReport(False, count, head_hash, f"entry {e.seq} does not link to entry {e.seq - 1}", e.seq)
        digest = entry_digest(seq=e.seq, at=e.at, action=e.action, actor_id=e.actor_id, actor_role=e.actor_role,
                              facility_id=e.facility_id, visit_id=e.visit_id, detail=e.detail,
                              prev_hash=e.prev_hash)
        if digest != e.hash:
            return ChainReport(False, count, head_hash, f"entry {e.seq} was altered (its digest does not match)",
                               e.seq)
        prev, expected_seq, count = e.hash, expected_seq + 1, count + 1
    if count != head_seq or prev != (head_hash if head_seq else GENESIS):
        return ChainReport(False, count, head_hash,
                           f"the log ends at entry {count} but its head says {head_seq}: entries were removed",
                           count + 1)
    return ChainReport(True, count, head_hash)
