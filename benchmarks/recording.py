"""Recorder cost: the CPU a recorder adds to a visit.

N visits, each with two parties publishing pre-encoded 640x480 VP8 (~500 kbps, 30 fps) and Opus
(50 packets/s) in real time through a Router. The same load runs twice: with a VisitRecorder
writing each party's WebM to a scratch folder, and without. The difference is the recorder's
cost (event loop + muxing thread), per recorded visit.

    .venv/bin/python benchmarks/recording.py [--visits 4] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loadtests.synthetic_media import encode_opus, encode_vp8
from sfu.recording.recorder import VisitRecorder
from sfu.recording.storage import LocalFolderStorage
from sfu.router import EncodedFrame, Router
from sfu.router.frames import vp8_is_keyframe


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def no_pli() -> None:
    return None


async def run(visits: int, seconds: float, record: bool, root: Path) -> tuple[float, int]:
    vp8, opus = encode_vp8(frames=90), encode_opus(packets=150)
    routers = [Router(f"visit-{n}", privileged=False) for n in range(visits)]
    recorders = []
    publishers = []
    for n, router in enumerate(routers):
        recorder = VisitRecorder(router.visit_id, router, LocalFolderStorage(root), now=lambda: datetime.now(UTC)) \
            if record else None
        for side in ("visitor", "resident"):
            video = router.add_producer(f"{side}-{n}", "video", no_pli)
            audio = router.add_producer(f"{side}-{n}", "audio", no_pli)
            if recorder is not None:
                recorder.record(side, video)  # type: ignore[arg-type]
                recorder.record(side, audio)  # type: ignore[arg-type]
            publishers.append((video, audio))
        recorders.append(recorder)
    start_wall, start_cpu = time.monotonic(), cpu()
    tick = 0
    while (elapsed := time.monotonic() - start_wall) < seconds:
        now = time.monotonic()
        for video, audio in publishers:  # 100 Hz ticks: audio every 2nd, video every 10/3rd
            if tick % 2 == 0:
                i = tick // 2
                audio.publish(EncodedFrame("audio", opus[i % len(opus)], i * 960, 48000, True, now))
            if (tick * 3) // 10 != ((tick - 1) * 3) // 10 or tick == 0:
                i = (tick * 3) // 10
                data = vp8[i % len(vp8)]
                video.publish(EncodedFrame("video", data, i * 3000, 90000, vp8_is_keyframe(data), now))
        tick += 1
        await asyncio.sleep(max(0.0, start_wall + tick / 100 - time.monotonic()))
    written = 0
    for recorder in recorders:
        if recorder is not None:
            manifest = await recorder.close()
            written += sum(f["size"] for f in manifest["files"])
    return (cpu() - start_cpu) / elapsed, written


async def main(visits: int, seconds: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base, _ = await run(visits, seconds, False, Path(tmp))
        with_recorder, written = await run(visits, seconds, True, Path(tmp))
    per_visit = (with_recorder - base) / visits
    print(f"{visits} visits, {seconds:.0f} s: without recorder {base:.4f} cores, with {with_recorder:.4f} cores, "
          f"{written / 1e6:.1f} MB written")
    print(f"recorder CPU per visit: {per_visit:.4f} cores ({per_visit * 1000:.1f} ms of CPU per second of visit)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--visits", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    uvloop.run(main(args.visits, args.seconds))
