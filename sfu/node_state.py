"""What a media node remembers across its own restart, in a small SQLite file next to its outbox.

- **Join tokens already used** (S1: a join token works once): kept until the token expires, so
  a restart does not reopen a copied token for replay.
- **Resume tokens** (S5: a participant who drops may rejoin until the end): on a successful join
  the node hands the participant a random resume token bound to that visit and that participant,
  valid until the visit's end. A dropped client rejoins with it without asking the control API
  (which may be down). Only a SHA-256 of each token is stored; with it the node keeps the
  claims it needs to re-create the visit's room after a crash (visit, participant, role, type,
  start, end).
- **Visits that ended here** (S2): a late join or resume never reopens them, restart or not.

Everything is also held in memory (lookups never touch the disk); writes go to disk on one
dedicated thread, and the ones that guard a security decision (a used join token, a new resume
token) are committed before the participant is answered.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import logging
import secrets
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from openvisit.join_tokens import JoinClaims

log = logging.getLogger(__name__)
T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS used_join_tokens (token_id TEXT PRIMARY KEY, expires_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS resume_tokens (
    digest TEXT PRIMARY KEY,
    visit_id TEXT NOT NULL,
    participant_id TEXT NOT NULL,
    participant_role TEXT NOT NULL,
    visit_type TEXT NOT NULL,
    starts_at TEXT NOT NULL,
    ends_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS resume_tokens_visit ON resume_tokens (visit_id, participant_id);
CREATE TABLE IF NOT EXISTS ended_visits (visit_id TEXT PRIMARY KEY, ends_at TEXT NOT NULL);
"""


@dataclass(frozen=True)
class ResumeGrant:
    """What a resume token stands for: one participant's place in one visit, until its end."""

    visit_id: str
    participant_id: str
    participant_role: str
    visit_type: str
    starts_at: datetime
    ends_at: datetime

    def claims(self, digest: str) -> JoinClaims:
        """The claims a resumed participant joins with (as its original join token's)."""
        return JoinClaims(visit_id=self.visit_id, participant_id=self.participant_id,
                          participant_role=self.participant_role, visit_type=self.visit_type,
                          visit_starts_at=self.starts_at, visit_ends_at=self.ends_at,
                          not_before=self.starts_at, expires_at=self.ends_at, token_id=f"resume-{digest[:16]}")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class NodeState:
    """The node's memory of used join tokens, resume tokens and ended visits. `path=None` keeps
    it in memory only (tests, and nodes that accept losing it on restart)."""

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = None if path is None else Path(path)
        self.used_tokens: dict[str, datetime] = {}
        self.resumes: dict[str, ResumeGrant] = {}
        self.ended: dict[str, datetime] = {}
        self._db: sqlite3.Connection | None = None
        self._thread: concurrent.futures.ThreadPoolExecutor | None = None
        self._writes: set[asyncio.Future[Any]] = set()

    @classmethod
    async def open(cls, path: Path | str | None, now: datetime) -> NodeState:
        """Load the state at `path` (created if missing), dropping what expired before `now`."""
        state = cls(path)
        if state.path is not None:
            state._thread = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="node-state")
            await state._disk(state._load, _iso(now))
        return state

    def _load(self, now: str) -> None:
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(SCHEMA)
        # ISO 8601 in UTC compares as text; what expired is of no use to anyone.
        db.execute("DELETE FROM used_join_tokens WHERE expires_at <= ?", (now,))
        db.execute("DELETE FROM resume_tokens WHERE ends_at <= ?", (now,))
        db.execute("DELETE FROM ended_visits WHERE ends_at <= ?", (now,))
        self._db = db
        for token_id, expires in db.execute("SELECT token_id, expires_at FROM used_join_tokens"):
            self.used_tokens[token_id] = datetime.fromisoformat(expires)
        for digest, visit, who, role, vtype, start, end in db.execute(
                "SELECT digest, visit_id, participant_id, participant_role, visit_type, starts_at, ends_at "
                "FROM resume_tokens"):
            self.resumes[digest] = ResumeGrant(visit, who, role, vtype, datetime.fromisoformat(start),
                                               datetime.fromisoformat(end))
        for visit, end in db.execute("SELECT visit_id, ends_at FROM ended_visits"):
            self.ended[visit] = datetime.fromisoformat(end)

    async def close(self) -> None:
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
        if self._thread is not None:
            await self._disk(self._close_db)
            self._thread.shutdown(wait=True)
            self._thread = None

    def _close_db(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    # ------------------------------------------------------------------ join tokens (S1)

    async def claim(self, claims: JoinClaims, now: datetime) -> bool:
        """True the first time a join token is presented (then stored until it expires), False after."""
        for token_id in [t for t, expires in self.used_tokens.items() if expires <= now]:
            del self.used_tokens[token_id]
        if claims.token_id in self.used_tokens:
            return False
        self.used_tokens[claims.token_id] = claims.expires_at  # before the write: a racing copy loses
        await self._write("INSERT OR REPLACE INTO used_join_tokens (token_id, expires_at) VALUES (?, ?)",
                          claims.token_id, _iso(claims.expires_at))
        return True

    # ------------------------------------------------------------------ resume tokens (S5)

    async def grant(self, claims: JoinClaims) -> str:
        """A new resume token for this participant of this visit, valid until the visit's end. It
        replaces the participant's earlier ones (one valid token per participant and visit)."""
        token = secrets.token_urlsafe(32)
        digest = _digest(token)
        grant = ResumeGrant(claims.visit_id, claims.participant_id, claims.participant_role, claims.visit_type,
                            claims.visit_starts_at, claims.visit_ends_at)
        for old in [d for d, g in self.resumes.items()
                    if g.visit_id == grant.visit_id and g.participant_id == grant.participant_id]:
            del self.resumes[old]
        self.resumes[digest] = grant
        await self._disk(self._store_grant, digest, grant)
        return token

    def _store_grant(self, digest: str, grant: ResumeGrant) -> None:
        if self._db is None:
            return
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM resume_tokens WHERE visit_id = ? AND participant_id = ?",
                             (grant.visit_id, grant.participant_id))
            self._db.execute("INSERT INTO resume_tokens VALUES (?, ?, ?, ?, ?, ?, ?)",
                             (digest, grant.visit_id, grant.participant_id, grant.participant_role, grant.visit_type,
                              _iso(grant.starts_at), _iso(grant.ends_at)))

    def redeem(self, token: str, now: datetime) -> JoinClaims | None:
        """The claims a resume token stands for, if it is known and not expired (S2: it ends with
        the visit; whether the visit already ended here is the room's question, `Sfu.room_for`)."""
        digest = _digest(token)
        grant = self.resumes.get(digest)
        if grant is None or grant.ends_at <= now:
            return None
        return grant.claims(digest)

    # ------------------------------------------------------------------ ended visits (S2)

    def visit_ended(self, visit_id: str, ends_at: datetime) -> None:
        """The visit ended here: nobody gets back in, by join token or resume token (S2). Written behind
        (callers are synchronous); `close` waits for it."""
        self.ended[visit_id] = ends_at
        if self._thread is not None:
            future = asyncio.ensure_future(self._disk(self._store_ended, visit_id, _iso(ends_at)))
            self._writes.add(future)
            future.add_done_callback(self._written)

    async def mark_ended(self, visit_id: str, ends_at: datetime) -> None:
        """The same, on disk before it returns: a room about to report its end calls this first, so
        a crash right after cannot let a resume token reopen the visit at the next start (S2)."""
        self.ended[visit_id] = ends_at
        if self._thread is not None:
            await self._disk(self._store_ended, visit_id, _iso(ends_at))

    def _written(self, future: asyncio.Future[Any]) -> None:
        self._writes.discard(future)
        if not future.cancelled() and future.exception() is not None:
            log.error("node state: writing an ended visit failed: %s", future.exception())

    def _store_ended(self, visit_id: str, ends_at: str) -> None:
        if self._db is None:
            return
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute("INSERT OR REPLACE INTO ended_visits (visit_id, ends_at) VALUES (?, ?)",
                             (visit_id, ends_at))

    # ------------------------------------------------------------------ disk

    async def _write(self, sql: str, *params: Any) -> None:
        def run() -> None:
            if self._db is not None:
                self._db.execute(sql, params)

        await self._disk(run)

    async def _disk(self, fn: Callable[..., T], *args: Any) -> T:
        if self._thread is None:  # in memory only
            return fn(*args)
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat()


def state_file_next_to(outbox: Path) -> Path:
    """The state store's file beside an outbox's: media-outbox-node.sqlite3 -> media-state-node.sqlite3."""
    if "outbox" in outbox.name:
        return outbox.with_name(outbox.name.replace("outbox", "state"))
    return outbox.with_name(f"{outbox.stem}-state{outbox.suffix}")
