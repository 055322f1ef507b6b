"""The capacity ladder: the same server under 1, 2, 4, ... concurrent visits, one Locust run per
step, the server's CPU (from /proc, so run it on the server's machine) and /metrics read at each
step, and a Markdown report with plots naming the largest load that met the thresholds.

    python -m loadtests.capacity --target http://127.0.0.1:8080 --server-pid PID \\
        --operator-email ops@example.org --operator-password ... --ladder 1,2,4,8,12 --seconds 40 --out capacity/

Each step provisions its own visits (loadtests/provision.py), runs `locust --headless` with one
visit pair per visit and no other users, and records: server CPU cores per visit, load-generator
CPU per simulated visit (Locust's own CPU: a saturated generator makes a server look worse than it
is), first-frame p95, mean fps and loss, the SFU's event-loop lag. Thresholds as for Locust."""

from __future__ import annotations

import argparse
import csv
import os
import re
import resource
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from loadtests.provision import provision

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def metric(target: str, name: str) -> float | None:
    try:
        with urllib.request.urlopen(target.rstrip("/") + "/metrics", timeout=10) as resp:
            text = resp.read().decode()
    except OSError:
        return None
    found = re.search(rf"^{re.escape(name)}(?:{{[^}}]*}})? ([0-9.eE+-]+)$", text, re.M)
    return float(found.group(1)) if found else None


@dataclass
class Step:
    visits: int
    server_cores: float
    generator_cores: float
    first_frame_p95_ms: float
    fps: float
    loss_pct: float
    failures: int
    loop_lag_ms: float | None
    passed: bool = False


def run_step(args: argparse.Namespace, n: int, folder: Path) -> Step:
    world = folder / f"world-{n}.json"
    ns = argparse.Namespace(target=args.target, operator_email=args.operator_email,
                            operator_password=args.operator_password, operator_totp_secret=None, pairs=n, bookers=0,
                            officers=0, investigators=0, visit_minutes=30, start_in=30, real_clock=False,
                            visitors_file=None, tag=None, insecure=False, out=world)
    provision(ns).save(world)
    csv_prefix = folder / f"step-{n}"
    locust = str(Path(sys.executable).parent / "locust")
    argv = [locust, "-f", str(Path(__file__).with_name("locustfile.py")), "--world", str(world), "--headless",
            "-u", str(n), "-r", str(n), "-t", f"{args.seconds + 30}s", "--hold-seconds", str(args.seconds),
            "--csv", str(csv_prefix), "--only-summary", "--stop-timeout", "20", "VisitPair"]
    if args.ice_addresses:
        argv += ["--ice-addresses", args.ice_addresses]
    c0, g0, t0 = cpu_seconds(args.server_pid), children_cpu(), time.monotonic()
    subprocess.run(argv, capture_output=True, timeout=args.seconds + 150, check=False)
    c1, g1, t1 = cpu_seconds(args.server_pid), children_cpu(), time.monotonic()
    lag = metric(args.target, "openvisit_event_loop_lag_seconds")
    with open(f"{csv_prefix}_stats.csv") as f:
        stats = {(r["Type"], r["Name"]): r for r in csv.DictReader(f)}

    def value(name: str, column: str) -> float:
        row = stats.get(("media", name))
        return float(row[column]) if row and int(row["Request Count"]) else float("nan")

    # Locust runs the window plus 30 s for start-up and joins (media encoded once per process): CPU per
    # visit over the whole run, so slightly low for the server and slightly high for the generator.
    step = Step(n, (c1 - c0) / (t1 - t0) / n, (g1 - g0) / (t1 - t0) / n, value("first frame ms", "95%"),
                value("fps", "Average Response Time"), value("loss 0.01%", "Average Response Time") / 100,
                int(stats[("", "Aggregated")]["Failure Count"]), None if lag is None else lag * 1000)
    step.passed = (step.failures == 0 and step.first_frame_p95_ms <= args.max_first_frame_p95_ms
                   and step.fps >= args.min_fps and step.loss_pct <= args.max_loss_pct)
    return step


def report(steps: list[Step], args: argparse.Namespace, folder: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.array([s.visits for s in steps])
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    series = [("CPU cores per visit", [s.server_cores for s in steps], None),
              ("first frame p95 (ms)", [s.first_frame_p95_ms for s in steps], args.max_first_frame_p95_ms),
              ("mean received fps", [s.fps for s in steps], args.min_fps),
              ("mean packet loss (%)", [s.loss_pct for s in steps], args.max_loss_pct)]
    for ax, (title, ys, limit) in zip(axes.flat, series, strict=True):
        ax.plot(x, ys, marker="o", label="server" if ax is axes.flat[0] else None)
        if limit is not None:
            ax.axhline(limit, color="red", linestyle="--", label="threshold")
            ax.legend()
        ax.set_title(title)
        ax.set_xlabel("concurrent visits")
        ax.grid(alpha=0.3)
    axes.flat[0].plot(x, [s.generator_cores for s in steps], marker="s", label="load generator")
    axes.flat[0].legend()
    fig.tight_layout()
    fig.savefig(folder / "capacity.png", dpi=100)
    passed = [s.visits for s in steps if s.passed]
    cores = np.array([s.server_cores for s in steps])
    gen = np.array([s.generator_cores for s in steps])
    lines = ["# openvisit capacity report", "",
             f"Target {args.target}, {os.cpu_count()} CPUs here, {args.seconds} s per step. Thresholds: first frame "
             f"p95 <= {args.max_first_frame_p95_ms:g} ms, fps >= {args.min_fps:g}, loss <= {args.max_loss_pct:g} %, "
             "no failed request or visit.", "",
             f"**Largest load meeting the thresholds: {max(passed) if passed else 'none'} concurrent visits.**", "",
             f"Server CPU per visit: median {np.median(cores):.3f} cores "
             f"(min {cores.min():.3f}, max {cores.max():.3f}); "
             f"load generator per simulated visit: median {np.median(gen):.3f} cores.", "",
             "![capacity](capacity.png)", "",
             "| visits | server cores/visit | generator cores/visit | first frame p95 ms | fps | loss % | failures "
             "| loop lag ms | met |", "|---|---|---|---|---|---|---|---|---|"]
    for s in steps:
        lag = "" if s.loop_lag_ms is None else f"{s.loop_lag_ms:.1f}"
        lines.append(f"| {s.visits} | {s.server_cores:.3f} | {s.generator_cores:.3f} | {s.first_frame_p95_ms:.0f} | "
                     f"{s.fps:.1f} | {s.loss_pct:.2f} | {s.failures} | {lag} | {'yes' if s.passed else 'no'} |")
    out = folder / "capacity.md"
    out.write_text("\n".join(lines) + "\n")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.capacity", description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True)
    parser.add_argument("--server-pid", type=int, required=True, help="the openvisit serve process (CPU from /proc)")
    parser.add_argument("--operator-email", required=True)
    parser.add_argument("--operator-password", required=True)
    parser.add_argument("--ladder", default="1,2,4,8", help="concurrent visits per step")
    parser.add_argument("--seconds", type=int, default=40)
    parser.add_argument("--ice-addresses", default="", help="passed to Locust (127.0.0.1 for a local target)")
    parser.add_argument("--max-first-frame-p95-ms", type=float, default=3000)
    parser.add_argument("--min-fps", type=float, default=25)
    parser.add_argument("--max-loss-pct", type=float, default=1)
    parser.add_argument("--out", type=Path, default=Path("capacity"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    steps = []
    for n in (int(v) for v in args.ladder.split(",")):
        step = run_step(args, n, args.out)
        print(f"{n} visits: {step}", flush=True)
        steps.append(step)
    print(f"report: {report(steps, args, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
