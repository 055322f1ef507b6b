"""The SREs' load test, small (issue 16): a real `openvisit serve` (test mode, media on 127.0.0.1),
`python -m loadtests.provision` over its public API, then Locust headless for 30 s with two visit
pairs, two bookers and an investigator, distributed (`--processes 2`: the master aggregates both
workers' samples), each a subprocess (Locust's gevent patching never enters this process).
Provisioning first holds one short visit with media and ends it (`--recorded-visits 1`), so the
investigator plays a real recording with range requests (R3). Asserted on Locust's CSV: zero
failures, media samples present and sane, the playback's 206 range requests, and the exit code
from the thresholds. The server's log must hold no traceback (a 500 in the API would show there).

Also the pure parts the run depends on: WebRTC's freeze definition and the threshold check."""

from __future__ import annotations

import csv
import json
import os
import subprocess
from pathlib import Path

import pytest

from loadtests.metrics import RtpCounts, freezes, loss_fraction
from loadtests.thresholds import FIRST_FRAME, FPS, LOSS, MEDIA, Limits, violations
from tests.faults.processes import PYTHON, ROOT
from tests.support_serve import Served

PAIRS, BOOKERS, INVESTIGATORS = 2, 2, 1
USERS = PAIRS + BOOKERS + INVESTIGATORS
PROCESSES = 2  # a distributed run: the media samples of both workers must add up on the master


def rows(path: Path) -> dict[tuple[str, str], dict[str, str]]:
    with path.open() as f:
        return {(r["Type"], r["Name"]): r for r in csv.DictReader(f)}


@pytest.mark.slow
def test_locust_smoke_run_visits_and_bookers(tmp_path: Path) -> None:
    with Served(tmp_path) as server:
        operator = subprocess.run(
            [PYTHON, "-m", "openvisit.cli", "create-operator", "--email", "ops@smoke.example.org", "--name", "Ops",
             "--password", "smoke-operator-pw"], env=server.env, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert operator.returncode == 0, operator.stderr
        world = tmp_path / "world.json"
        provisioned = subprocess.run(
            [PYTHON, "-m", "loadtests.provision", "--target", server.url, "--operator-email", "ops@smoke.example.org",
             "--operator-password", "smoke-operator-pw", "--pairs", str(PAIRS), "--bookers", str(BOOKERS),
             "--officers", "0", "--investigators", str(INVESTIGATORS), "--recorded-visits", "1",
             "--ice-addresses", "127.0.0.1", "--visit-minutes", "10", "--out", str(world)],
            cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert provisioned.returncode == 0, provisioned.stderr
        provisioned_world = json.loads(world.read_text())
        assert provisioned_world["clock"] == "test"
        assert len(provisioned_world["recordings"]) == 1
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENVISIT_")}
        run = subprocess.run(
            [str(Path(PYTHON).parent / "locust"), "-f", "loadtests/locustfile.py", "--world", str(world),
             "--headless", "-u", str(USERS), "-r", str(USERS), "-t", "30s",
             "--hold-seconds", "10", "--ice-addresses", "127.0.0.1", "--csv", str(tmp_path / "run"),
             "--only-summary", "--stop-timeout", "15", "--processes", str(PROCESSES),
             "--max-first-frame-p95-ms", "5000", "--min-fps", "5", "--max-loss-pct", "5", "--max-error-rate-pct", "0"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=90)
        log = server.output()
    assert run.returncode == 0, run.stderr[-4000:]
    assert "Traceback" not in log, log
    stats = rows(tmp_path / "run_stats.csv")
    total = stats[("", "Aggregated")]
    assert int(total["Failure Count"]) == 0, run.stderr[-4000:]
    outcome = stats[("visit", "outcome")]
    assert int(outcome["Request Count"]) >= PAIRS  # every pair held at least one whole visit
    for name in ("join http ms", "ice connected ms", "first frame ms", "fps", "loss 0.01%", "jitter ms", "freezes",
                 "bitrate kbps"):
        assert int(stats[(MEDIA, name)]["Request Count"]) >= 2 * PAIRS, name  # both parties of each visit
    for n in range(1, PROCESSES + 1):  # each worker held visits of its own share, and
        assert f"process {n} of {PROCESSES}: visit " in run.stderr, run.stderr[-4000:]
    visits = int(outcome["Request Count"])
    assert int(stats[(MEDIA, "first frame ms")]["Request Count"]) == 2 * visits  # both parties' samples of each
    assert float(stats[(MEDIA, "fps")]["Average Response Time"]) > 5
    assert float(stats[(MEDIA, "loss 0.01%")]["Average Response Time"]) < 500  # under 5 %
    assert float(stats[(MEDIA, "first frame ms")]["95%"]) < 5000
    assert 100 < float(stats[(MEDIA, "bitrate kbps")]["Average Response Time"]) < 5000  # ~500 kbps of VP8 + Opus
    for name in ("/v1/residents/[id]/availability", "/v1/quotes", "/v1/visits (book)"):
        assert int(stats[("GET" if "availability" in name else "POST", name)]["Request Count"]) >= 1, name
    for name in ("/v1/facilities/[id]/recordings", "/v1/recordings/[id]", "/v1/recordings/[id]/files/[name] (range)"):
        assert int(stats[("GET", name)]["Request Count"]) >= 1, name  # the recording was found, opened, played
        assert int(stats[("GET", name)]["Failure Count"]) == 0, name  # every range request answered 206


def test_freezes_follow_the_webrtc_definition() -> None:
    """A freeze: an interval > max(3 x average, average + 150 ms)."""
    steady = [i / 30 for i in range(60)]
    assert freezes(steady).count == 0
    gap = [*steady, steady[-1] + 0.170]  # 170 ms: more than 3 x 33 ms but less than 33 + 150 ms
    assert freezes(gap).count == 0
    frozen = [*steady, steady[-1] + 0.400, steady[-1] + 0.433]
    got = freezes(frozen)
    assert got.count == 1 and abs(got.total_seconds - 0.4) < 1e-9
    assert loss_fraction([RtpCounts(received=990, lost=10, jitter_units=0, clock_rate=90000)]) == pytest.approx(0.01)


class _Entry:
    def __init__(self, values: list[float], failures: int = 0) -> None:
        self.values = sorted(values)
        self.num_requests = len(values)
        self.num_failures = failures
        self.avg_response_time = sum(values) / len(values) if values else 0.0

    def get_response_time_percentile(self, percent: float) -> float:
        return self.values[min(len(self.values) - 1, int(percent * len(self.values)))]


def test_thresholds_name_what_was_missed() -> None:
    entries = {(FIRST_FRAME, MEDIA): _Entry([300.0] * 19 + [9000.0] * 2), (FPS, MEDIA): _Entry([29.0, 4.0]),
               (LOSS, MEDIA): _Entry([20.0, 40.0])}
    total = _Entry([1.0] * 100, failures=3)
    limits = Limits(max_first_frame_p95_ms=5000, min_fps=20, max_loss_pct=1, max_error_rate_pct=1)
    missed = violations(limits, entries, total)
    assert any(m.startswith("first frame p95") for m in missed)
    assert any(m.startswith("fps 16.50 < 20") for m in missed)
    assert any(m.startswith("error rate") for m in missed)
    assert not any(m.startswith("loss") for m in missed)  # 0.3 % on average
    assert violations(Limits(max_join_p95_ms=100), {}, total) == ["join p95 ms: no samples"]
