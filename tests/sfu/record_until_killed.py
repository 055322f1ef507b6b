"""Helper for the crash tests (tests/sfu/test_recording_segments.py, tests/test_recording_failures.py):
records a social visit's two parties with the real VisitRecorder, fed synthetic VP8 + Opus frames
in real time, until it is killed. Prints one JSON line once media is on disk:
{"origin_wall": <time.time() of the recording clock's origin>, "files": [...]}.

    python tests/sfu/record_until_killed.py RECORDINGS_DIR VISIT_ID STARTED_AT_ISO
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

from loadtests.synthetic_media import encode_opus, encode_vp8
from sfu.recording.recorder import VisitRecorder
from sfu.recording.storage import LocalFolderStorage
from sfu.router import EncodedFrame, Router
from sfu.router.frames import vp8_is_keyframe


async def _no_pli() -> None:
    return None


async def main(root: Path, visit_id: str, started_at: datetime) -> None:
    vp8, opus = encode_vp8(frames=60), encode_opus(packets=50)
    begun = time.monotonic()
    router = Router(visit_id, privileged=False)
    recorder = VisitRecorder(visit_id, router, LocalFolderStorage(root),
                             now=lambda: started_at + timedelta(seconds=time.monotonic() - begun))
    origin_wall = time.time() - (time.monotonic() - recorder.timeline.origin)
    parties = []
    for side, participant in (("visitor", "user-1"), ("resident", "resident-1")):
        video = router.add_producer(participant, "video", _no_pli)
        audio = router.add_producer(participant, "audio", _no_pli)
        recorder.record(side, video)  # type: ignore[arg-type]
        recorder.record(side, audio)  # type: ignore[arg-type]
        parties.append((video, audio))
    sent_video = sent_audio = 0
    announced = False
    while True:  # 10 ms ticks: video every 1/30 s, audio every 20 ms, stamped as they are sent
        t = time.monotonic() - recorder.timeline.origin
        while sent_video / 30 <= t:
            data = vp8[sent_video % len(vp8)]
            for video, _ in parties:
                video.publish(EncodedFrame("video", data, sent_video * 3000, 90000, vp8_is_keyframe(data),
                                           time.monotonic()))
            sent_video += 1
        while sent_audio / 50 <= t:
            for _, audio in parties:
                audio.publish(EncodedFrame("audio", opus[sent_audio % len(opus)], sent_audio * 960, 48000, True,
                                           time.monotonic()))
            sent_audio += 1
        if not announced and t > 1.5:
            names = sorted(p.name for p in (root / visit_id).iterdir())
            print(json.dumps({"origin_wall": origin_wall, "files": names}), flush=True)
            announced = True
        await asyncio.sleep(0.01)

if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2], datetime.fromisoformat(sys.argv[3])))
