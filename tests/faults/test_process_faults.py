"""Faults with real processes (issue 11): `openvisit serve` and a standalone media node killed,
terminated and restarted under live visits, a participant frozen with SIGSTOP. Each test asserts
the outcome (S5, S6), the money (M4, M6) and the timing, and prints what it measured.

Participants are real aiortc clients in their own processes (tests/faults/participant.py); the
world is built over the API (tests/faults/world.py); the test clock, not real 5-minute waits,
takes the visits to their end. Run with `-s` to see the measurements as they are taken:

    .venv/bin/pytest tests/faults -s
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path

import pytest

from tests.faults.findings import Findings
from tests.faults.processes import HttpServerProcess, ParticipantProcess, ProcessSet, ServerEnv, free_port
from tests.faults.world import Visit, World, build_world

pytestmark = pytest.mark.slow

MEDIA_START_TIMEOUT = 30.0
GRACE = timedelta(seconds=61)  # the sweep closes a visit 60 s after its end (docs/architecture.md)
CONNECTED_TOLERANCE = 4  # seconds: heartbeats every 2 s, whole seconds, clients measured from outside


# ---------------------------------------------------------------------------- helpers


def media_since(parties: list[ParticipantProcess], *, timeout: float, after: float = 0.0,
                min_attempt: int = 1) -> float | None:
    """When video flowed both ways: the later of the parties' first video frames (wall time)."""
    times = []
    for p in parties:
        line = p.wait_for("first_frame", timeout, after=after,
                          where=lambda b: b.get("kind") == "video" and b.get("attempt", 0) >= min_attempt)
        if line is None:
            return None
        times.append(float(line["t"]))
    return max(times)


def require_media(parties: list[ParticipantProcess], since: float | None) -> float:
    """Fail (with who received what) when video never flowed both ways before the fault."""
    if since is None:
        seen = {p.name: (p.frames("audio"), p.frames("video"), [e["kind"] for e in p.events("track")])
                for p in parties}
        pytest.fail(f"media never flowed both ways before the fault: (audio, video, tracks) received {seen}")
    return since


def video_frames_between(p: ParticipantProcess, t0: float, t1: float) -> int:
    """Video frames received between two wall times, from the participant's stats lines."""
    stats = [b for b in p.events("stats")]
    before = [b["frames"]["video"] for b in stats if b["t"] <= t0]
    upto = [b["frames"]["video"] for b in stats if b["t"] <= t1]
    return (upto[-1] if upto else 0) - (before[-1] if before else 0)


def noticed(p: ParticipantProcess, since: float, timeout: float) -> float | None:
    """Seconds from `since` until the participant saw its socket close (or its peer connection fail)."""
    line = p.wait_for("socket_closed", timeout, after=since)
    return None if line is None else float(line["t"]) - since


def cli_verifications(f: Findings, env: ServerEnv, *, required: bool = True) -> None:
    """`openvisit audit verify` and `openvisit recordings verify` on the test's data; with
    `required=False` their results are reported, not asserted."""
    for args in (("audit", "verify"), ("recordings", "verify")):
        done = env.cli(*args)
        what = f"`openvisit {' '.join(args)}` exits 0"
        observed = f"exit {done.returncode}: {(done.stdout + done.stderr).strip()[-600:]}"
        if required:
            f.check(done.returncode == 0, what, observed)
        else:
            f.note(f"{what}? {observed}")


def recording_notes(f: Findings, env: ServerEnv, v: Visit, label: str) -> None:
    """What is on disk for a visit's recording (R1, R2): files, sizes, the media span the manifest names."""
    folder = env.data_dir / "recordings" / v.id
    files = sorted(f"{p.name} {p.stat().st_size} B" for p in folder.glob("*")) if folder.exists() else []
    span = ""
    manifest = folder / "manifest.json"
    if manifest.exists():
        doc = json.loads(manifest.read_text()).get("document", {})
        span = ", manifest media: " + "; ".join(
            f"{x.get('party')} {x.get('first_media_ms')}-{x.get('last_media_ms')} ms" for x in doc.get("files", []))
    f.note(f"{label}: recording folder {files or 'absent'}{span}")


def recording_complete(f: Findings, env: ServerEnv, v: Visit, label: str, *, min_files: int,
                       timeout: float = 20.0) -> None:
    """R1, R2: every segment on disk is in the visit's signed manifest (recovered ones included),
    nothing is left half-written, and at least `min_files` segments were kept (none overwritten)."""
    folder = env.data_dir / "recordings" / v.id
    deadline = time.time() + timeout
    listed: set[str] = set()
    on_disk: set[str] = set()
    leftovers: list[str] = []
    while time.time() < deadline:
        manifest = folder / "manifest.json"
        if manifest.exists():
            doc = json.loads(manifest.read_text()).get("document", {})
            listed = {x.get("name") for x in doc.get("files", [])}
        on_disk = {p.name for p in folder.glob("*.webm")} if folder.exists() else set()
        leftovers = sorted(p.name for p in folder.glob("*.partial")) if folder.exists() else []
        if on_disk and on_disk <= listed and not leftovers and len(on_disk) >= min_files:
            break
        time.sleep(0.5)
    f.check(bool(on_disk) and on_disk <= listed, f"{label}: every recording segment on disk is in the signed "
            "manifest (R2)", f"on disk {sorted(on_disk)}, listed {sorted(x for x in listed if x)}")
    f.check(not leftovers, f"{label}: no half-written file left (orphans recovered, R1)", leftovers or None)
    f.check(len(on_disk) >= min_files, f"{label}: at least {min_files} segments kept (none overwritten, R1)",
            sorted(on_disk))


def money_checks(f: Findings, w: World, v: Visit, *, credited: bool, label: str) -> None:
    balance = w.balance(v.visitor)
    grew = balance - v.balance_before
    if credited:
        f.check(grew == v.price_cents, f"{label}: credited automatically, balance grew by the price "
                f"{v.price_cents} (M6)", f"balance {v.balance_before} -> {balance}")
    else:
        f.check(grew == 0, f"{label}: not credited (M4)", f"balance {v.balance_before} -> {balance}")
    f.note(f"{label}: credit lots for the visit {w.credits_for(v.id)}")


def settle(w: World, visits: list[Visit]) -> None:
    """Move the clock past every visit's end plus the sweep's grace, then sweep."""
    w.advance_to(max(v.ends_at for v in visits) + GRACE)
    w.sweep()


def final(w: World, v: Visit, timeout: float = 15) -> dict:
    """The visit once it left scheduled/in_progress (or as it is after `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        got = w.visit(v)
        if got["status"] not in ("scheduled", "in_progress") or time.monotonic() > deadline:
            return got
        time.sleep(0.25)


def describe(v: dict) -> str:
    return (f"status={v['status']} ended_reason={v.get('ended_reason')} connected_seconds={v.get('connected_seconds')}"
            f" interrupted_at={v.get('interrupted_at')}")


def start_api(procs: ProcessSet, tmp_path: Path, **extra: str) -> tuple[ServerEnv, HttpServerProcess]:
    env = ServerEnv.create(tmp_path, **extra)
    return env, procs.serve(env)


# ---------------------------------------------------------------------------- (a)


def test_sigkill_of_serve_during_two_visits_rejoin_resumes_one_and_the_other_fails_credited(
        procs: ProcessSet, tmp_path: Path) -> None:
    """Rules S5, S6, M4, M6: `openvisit serve` (embedded media) killed -9 under two live visits and
    restarted on the same data dir and port. A's parties give up: A ends `failed`, credited, with
    the connected time media really flowed. B's parties rejoin: media flows again, B ends
    `completed`, not credited, with both stretches of connected time."""
    f = Findings("sigkill-serve")
    env, api = start_api(procs, tmp_path)
    w = build_world(api.url, env, pairs=2)
    a, b = w.book_started(2)
    f.note(f"visit A {a.id}, visit B {b.id}")
    a_parties = [procs.participant("A-visitor", api.url, a.visitor.token or "", a.id, give_up=True),
                 procs.participant("A-kiosk", api.url, a.kiosk.token or "", a.id, give_up=True)]
    b_parties = [procs.participant("B-visitor", api.url, b.visitor.token or "", b.id, rejoin=True),
                 procs.participant("B-kiosk", api.url, b.kiosk.token or "", b.id, rejoin=True)]
    a_since = require_media(a_parties, media_since(a_parties, timeout=MEDIA_START_TIMEOUT))
    b_since = require_media(b_parties, media_since(b_parties, timeout=MEDIA_START_TIMEOUT))
    time.sleep(max(0.0, 12 - (time.time() - min(a_since, b_since))))
    for p in (*a_parties, *b_parties):
        f.check(video_frames_between(p, time.time() - 3, time.time()) > 30, f"{p.name}: video flowing before the kill",
                video_frames_between(p, time.time() - 3, time.time()))

    t_kill = api.kill()
    a_before, b_before = t_kill - a_since, t_kill - b_since
    f.note(f"media flowed before the kill: A {a_before:.1f} s, B {b_before:.1f} s")
    for p in (*a_parties, *b_parties):
        f.measure(f"kill -9 -> {p.name} noticed", noticed(p, t_kill, 10))
    for p in a_parties:
        code = p.wait(10)
        f.check(code is not None and code != 0, f"{p.name} (--give-up) exited after the drop", code)

    time.sleep(3)
    t_restart = time.time()
    api.start()
    f.measure("restart -> API answering", time.time() - t_restart)
    rejoined = media_since(b_parties, timeout=40, after=t_restart, min_attempt=2)
    f.measure("restart -> B's media flowing both ways again", None if rejoined is None else rejoined - t_restart)
    f.check(rejoined is not None, "B's parties rejoined and media flows again (S5)")
    if rejoined is not None:
        time.sleep(max(0.0, 8 - (time.time() - rejoined)))
        for p in b_parties:
            n = video_frames_between(p, time.time() - 3, time.time())
            f.check(n > 30, f"{p.name}: video flowing after the rejoin", n)
    interim = {v.id: w.visit(v) for v in (a, b)}
    f.note(f"before the end: A {describe(interim[a.id])}; B {describe(interim[b.id])}")
    f.check(interim[a.id].get("interrupted_at") is not None, "A: interrupted_at set once the control plane learned "
            "the media session was lost", interim[a.id].get("interrupted_at"))

    t_end = time.time()
    settle(w, [a, b])
    b_after = (t_end - rejoined) if rejoined is not None else 0.0
    for p in b_parties:
        ended = p.wait_for("ended", 10, after=t_restart)
        f.check(ended is not None and ended.get("reason") == "completed", f"{p.name}: ended completed at the end",
                ended)
    got_a, got_b = final(w, a), final(w, b)
    f.note(f"final: A {describe(got_a)}; B {describe(got_b)}")
    f.check(got_a["status"] == "failed", "A (parties gave up) ends failed (S6)", got_a["status"])
    f.check(got_b["status"] == "completed", "B (parties rejoined) ends completed (S5, S6)", got_b["status"])
    conn_a, conn_b = got_a.get("connected_seconds"), got_b.get("connected_seconds")
    f.check(conn_a is not None and abs(conn_a - a_before) <= CONNECTED_TOLERANCE,
            f"A: connected_seconds ~ media before the kill ({a_before:.1f} s), not the whole 300 s", conn_a)
    f.check(conn_b is not None and abs(conn_b - (b_before + b_after)) <= CONNECTED_TOLERANCE,
            f"B: connected_seconds ~ before the kill + after the rejoin ({b_before:.1f} + {b_after:.1f} s)", conn_b)
    money_checks(f, w, a, credited=True, label="A")
    money_checks(f, w, b, credited=False, label="B")
    problems = w.ledger_problems()
    f.check(not problems, "the ledger balances (every transaction sums to zero)", problems or None)
    recording_complete(f, env, a, "A", min_files=2)  # the crashed segments, recovered
    recording_complete(f, env, b, "B", min_files=4)  # before the crash (recovered) + after the rejoin
    recording_notes(f, env, a, "A")
    recording_notes(f, env, b, "B")
    cli_verifications(f, env)
    f.verify()


# ---------------------------------------------------------------------------- (b)


def test_sigkill_of_a_standalone_media_node_interrupts_the_visit_and_it_fails_credited(
        procs: ProcessSet, tmp_path: Path) -> None:
    """S6, M6: a standalone `openvisit sfu` node killed -9 mid-visit. The control plane notices
    within the lease (interrupted_at set); parties who do not come back: `failed`, credited."""
    f = Findings("sigkill-node")
    node_port = free_port()
    env, api = start_api(procs, tmp_path, OPENVISIT_EMBEDDED_MEDIA="false",
                         OPENVISIT_SIGNALING_URL=f"ws://127.0.0.1:{node_port}/v1/signaling")
    w = build_world(api.url, env, pairs=1)
    [v] = w.book_started(1)  # the clock moves before the node starts: it follows it from its first heartbeat
    t0 = time.time()
    node = procs.media_node(env, api.url, node_port)
    f.measure("node start -> signaling answering", time.time() - t0)
    parties = [procs.participant("visitor", api.url, v.visitor.token or "", v.id, give_up=True),
               procs.participant("kiosk", api.url, v.kiosk.token or "", v.id, give_up=True)]
    since = require_media(parties, media_since(parties, timeout=MEDIA_START_TIMEOUT))
    time.sleep(max(0.0, 10 - (time.time() - since)))
    f.check(w.visit(v).get("interrupted_at") is None, "no interruption while the node is alive",
            w.visit(v).get("interrupted_at"))

    t_kill = node.kill()
    before = t_kill - since
    f.note(f"media flowed before the kill: {before:.1f} s")
    for p in parties:
        f.measure(f"node kill -9 -> {p.name} noticed", noticed(p, t_kill, 10))
    got = w.wait_visit(v, field_set="interrupted_at", timeout=20)
    t_seen = time.time()
    interrupted = got.get("interrupted_at") is not None
    f.measure("node kill -9 -> interrupted_at visible in the API", (t_seen - t_kill) if interrupted else None)
    f.check(interrupted and t_seen - t_kill <= 10, "interrupted_at set within ~10 s of the node's death "
            "(lease 6 s)", got.get("interrupted_at"))
    f.note(f"after the kill: {describe(got)}")

    settle(w, [v])
    got = final(w, v)
    f.note(f"final: {describe(got)}")
    f.check(got["status"] == "failed", "the visit ends failed (S6)", got["status"])
    conn = got.get("connected_seconds")
    f.check(conn is not None and abs(conn - before) <= CONNECTED_TOLERANCE,
            f"connected_seconds ~ media before the kill ({before:.1f} s)", conn)
    money_checks(f, w, v, credited=True, label="visit")
    problems = w.ledger_problems()
    f.check(not problems, "the ledger balances", problems or None)
    t_restart = time.time()
    node.start()  # the operator restarts the node: it recovers the crash's recording segments (R1)
    f.measure("node restart -> answering", time.time() - t_restart)
    recording_complete(f, env, v, "visit", min_files=2)
    f.measure("node restart -> recovered segments signed and listed", time.time() - t_restart)
    recording_notes(f, env, v, "visit")
    cli_verifications(f, env)
    f.verify()


# ---------------------------------------------------------------------------- (c)


def test_a_sigstopped_participant_is_dropped_within_5_s_and_frozen_time_is_not_connected_time(
        procs: ProcessSet, tmp_path: Path) -> None:
    """S5, M8: the kiosk's client frozen (SIGSTOP) 15 s into the visit, thawed 10 s later. The
    visitor is told `participant_left` within 5 s; the kiosk rejoins; the frozen time is not counted."""
    f = Findings("sigstop-participant")
    env, api = start_api(procs, tmp_path)
    w = build_world(api.url, env, pairs=1)
    [v] = w.book_started(1)
    visitor = procs.participant("visitor", api.url, v.visitor.token or "", v.id, rejoin=True)
    kiosk = procs.participant("kiosk", api.url, v.kiosk.token or "", v.id, rejoin=True)
    since = require_media([visitor, kiosk], media_since([visitor, kiosk], timeout=MEDIA_START_TIMEOUT))
    time.sleep(max(0.0, 15 - (time.time() - since)))

    t_stop = time.time()
    kiosk.stop()
    left = visitor.wait_for("participant_left", 12, after=t_stop)
    f.measure("SIGSTOP -> visitor told participant_left", None if left is None else left["t"] - t_stop)
    f.check(left is not None and left["t"] - t_stop <= 5, "the visitor gets participant_left within 5 s", left)
    time.sleep(max(0.0, 10 - (time.time() - t_stop)))
    t_cont = time.time()
    kiosk.cont()
    frozen = t_cont - t_stop
    resumed = media_since([kiosk], timeout=30, after=t_cont, min_attempt=2)
    f.measure("SIGCONT -> kiosk rejoined and receiving video", None if resumed is None else resumed - t_cont)
    f.check(resumed is not None, "the kiosk rejoins after it thaws (S5)")
    if resumed is not None:
        time.sleep(max(0.0, 6 - (time.time() - resumed)))
        n = video_frames_between(visitor, time.time() - 3, time.time())
        f.check(n > 30, "the visitor receives the kiosk's video again", n)
    t_end = time.time()
    before, after = t_stop - since, (t_end - resumed) if resumed is not None else 0.0
    f.note(f"media before the stop {before:.1f} s, frozen {frozen:.1f} s, after the rejoin {after:.1f} s")

    settle(w, [v])
    got = final(w, v)
    f.note(f"final: {describe(got)}")
    f.check(got["status"] == "completed", "the visit ends completed (the kiosk came back)", got["status"])
    conn = got.get("connected_seconds")
    f.check(conn is not None and abs(conn - (before + after)) <= CONNECTED_TOLERANCE,
            f"connected_seconds ~ {before:.1f} + {after:.1f} s, the frozen {frozen:.1f} s not counted (M8)", conn)
    money_checks(f, w, v, credited=False, label="visit")
    recording_complete(f, env, v, "visit", min_files=2)  # the frozen party's rejoin adds no broken file
    cli_verifications(f, env)
    f.verify()


# ---------------------------------------------------------------------------- (d)


def test_sigterm_of_serve_with_a_live_visit_exits_within_5_s_ends_it_failed_and_credits_it(
        procs: ProcessSet, tmp_path: Path) -> None:
    """S6, M6: SIGTERM to `openvisit serve` (embedded media) under a live visit. It exits within
    5 s; both parties get `ended` (failed, with the reason) and the server closes their sockets;
    the visit is failed and credited."""
    f = Findings("sigterm-serve")
    env, api = start_api(procs, tmp_path)
    w = build_world(api.url, env, pairs=1)
    [v] = w.book_started(1)
    parties = [procs.participant("visitor", api.url, v.visitor.token or "", v.id),
               procs.participant("kiosk", api.url, v.kiosk.token or "", v.id)]
    since = require_media(parties, media_since(parties, timeout=MEDIA_START_TIMEOUT))
    time.sleep(max(0.0, 8 - (time.time() - since)))

    t_term = time.time()
    took = api.terminate(within=30)
    before = t_term - since
    f.measure("SIGTERM -> serve exited", took)
    code = api.proc.returncode if api.proc else None
    f.check(took <= 5, "serve exits within 5 s of SIGTERM", f"{took:.2f} s, exit code {code}")
    for p in parties:
        ended = p.wait_for("ended", 5, after=t_term)
        f.measure(f"SIGTERM -> {p.name} got ended", None if ended is None else ended["t"] - t_term)
        f.check(ended is not None and ended.get("reason") == "failed" and bool(ended.get("message")),
                f"{p.name}: ended with reason failed and a message saying why", ended)
        closed = p.wait_for("socket_closed", 5, after=t_term)
        f.check(closed is not None and closed.get("after_ended") is True and closed.get("phase") == "socket",
                f"{p.name}: the server closed its socket after ended", closed)

    api.start()
    got = final(w, v, timeout=5)
    f.note(f"right after the restart (before the end): {describe(got)}")
    f.check(got["status"] == "failed", "the visit is failed once the server is back (reported at shutdown)",
            got["status"])
    conn = got.get("connected_seconds")
    f.check(conn is not None and abs(conn - before) <= CONNECTED_TOLERANCE,
            f"connected_seconds ~ media before SIGTERM ({before:.1f} s)", conn)
    money_checks(f, w, v, credited=True, label="visit")
    if got["status"] != "failed":  # how it ends when nothing was recorded at shutdown
        settle(w, [v])
        f.note(f"after the end and the sweep: {describe(final(w, v))}; "
               f"balance {w.balance(v.visitor)}")
    problems = w.ledger_problems()
    f.check(not problems, "the ledger balances", problems or None)
    cli_verifications(f, env)
    f.verify()


# ---------------------------------------------------------------------------- (e)


def test_the_control_api_killed_while_a_node_ends_a_visit_loses_no_outcome(procs: ProcessSet, tmp_path: Path) -> None:
    """S2, S6, R2: the control API is SIGKILLed 20 s before a visit's end while a standalone node
    runs it. The node ends the visit on time without it (its clock followed the control plane's),
    keeps `ended` and `recording_closed` in its outbox, and delivers them once the API is back:
    the visit is `completed` with the node's connected seconds, never taken for interrupted, its
    recording signed; nothing is charged twice or credited."""
    f = Findings("api-down")
    node_port = free_port()
    env, api = start_api(procs, tmp_path, OPENVISIT_EMBEDDED_MEDIA="false",
                         OPENVISIT_SIGNALING_URL=f"ws://127.0.0.1:{node_port}/v1/signaling")
    w = build_world(api.url, env, pairs=1)
    [v] = w.book_started(1)
    w.advance_to(v.ends_at - timedelta(seconds=45))  # the visit's last 45 s
    procs.media_node(env, api.url, node_port)  # it follows the control plane's clock from its first heartbeat
    parties = [procs.participant("visitor", api.url, v.visitor.token or "", v.id, give_up=True),
               procs.participant("kiosk", api.url, v.kiosk.token or "", v.id, give_up=True)]
    since = require_media(parties, media_since(parties, timeout=MEDIA_START_TIMEOUT))
    ends_in = (v.ends_at - w.now()).total_seconds()
    time.sleep(max(0.0, ends_in - 20))

    t_kill = api.kill()
    f.note(f"control API killed {ends_in - (t_kill - since):.1f} s before the visit's end")
    ended = [p.wait_for("ended", 40, after=t_kill) for p in parties]
    t_ended = time.time()
    for p, e in zip(parties, ended, strict=True):
        f.check(e is not None and e.get("reason") == "completed", f"{p.name}: ended completed on time while the "
                "control API is down (S2)", e)
    media = (max(float(e["t"]) for e in ended if e is not None) if any(ended) else t_ended) - since
    time.sleep(5)

    t_restart = time.time()
    api.start()
    f.measure(f"control API down for {t_restart - t_kill:.1f} s; restart -> answering", time.time() - t_restart)
    got = w.wait_visit(v, until="completed", timeout=30)
    f.measure("API restart -> the node's `ended` applied (visit completed)",
              time.time() - t_restart if got["status"] == "completed" else None)
    f.note(f"final: {describe(got)}")
    f.check(got["status"] == "completed", "the visit is completed from the node's own report (S6)", got["status"])
    f.check(got.get("interrupted_at") is None, "a node that kept running is never taken for gone",
            got.get("interrupted_at"))
    conn = got.get("connected_seconds")
    f.check(conn is not None and abs(conn - media) <= CONNECTED_TOLERANCE,
            f"connected_seconds ~ media between the parties ({media:.1f} s)", conn)
    money_checks(f, w, v, credited=False, label="visit")
    problems = w.ledger_problems()
    f.check(not problems, "the ledger balances", problems or None)
    recording_complete(f, env, v, "visit", min_files=2)
    recording_notes(f, env, v, "visit")
    cli_verifications(f, env)
    f.verify()
