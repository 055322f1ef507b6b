"""Resume tokens (S5, issue 11): a participant who drops takes its place again with the resume
token its join was given, without a new join token from the control API (which may be down),
until the visit's end (S2), and also after the media node restarted (the room is re-created
from the stored claims). Used join tokens stay used across the restart (S1)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from control_api.app import start_site
from openvisit.join_tokens import JoinTokenSigner, JoinTokenVerifier
from sfu.node_state import NodeState
from sfu.service import Sfu
from signaling.server import create_signaling_app
from tests.sfu.test_signaling import Client, Stack, connect, now, whole
from tests.support_events import InProcessEventSink


async def _node(key: Ed25519PrivateKey, state_file: Path) -> tuple[Stack, object]:
    events = InProcessEventSink()
    state = await NodeState.open(state_file, now())
    sfu = Sfu(events, now, warnings=(3, 1), media_timeout=10, state=state)
    app = create_signaling_app(sfu, JoinTokenVerifier(key.public_key()), now)
    runner, port = await start_site(app, "127.0.0.1", 0)
    return Stack(f"ws://127.0.0.1:{port}/v1/signaling", sfu, events, JoinTokenSigner(key)), runner


@pytest.fixture
async def node(tmp_path: Path, loopback_only: None) -> AsyncIterator[Stack]:
    stack, runner = await _node(Ed25519PrivateKey.generate(), tmp_path / "state.sqlite3")
    yield stack
    await stack.sfu.close()
    await stack.sfu.state.close()
    await runner.cleanup()  # type: ignore[attr-defined]


async def _flowing(receiver: Client, more_than: int = 10) -> bool:
    start = len(receiver.received["video"])
    for _ in range(80):
        if len(receiver.received["video"]) > start + more_than:
            return True
        await asyncio.sleep(0.1)
    return False


async def test_s5_a_dropped_participant_rejoins_with_its_resume_token(node: Stack) -> None:
    start, end = now() - timedelta(seconds=1), now() + timedelta(minutes=20)
    visitor = await connect(node, node.token("visit-r", "user-1", "visitor", start=start, end=end))
    resident = await connect(node, node.token("visit-r", "resident-9", "resident", start=start, end=end))
    resume = resident.messages[0]["resume_token"]
    assert isinstance(resume, str) and len(resume) >= 40  # random, unguessable
    assert visitor.messages[0]["resume_token"] != resume  # bound to one participant
    try:
        assert await _flowing(visitor)
        await resident.close()  # the resident's connection drops
        await visitor.wait_message("participant_left")
        again = await connect(node, None, resume=resume)  # no join token, no control API
        assert again.messages[0]["type"] == "joined" and again.messages[0]["side"] == "resident"
        assert again.messages[0]["resume_token"] == resume
        assert await _flowing(visitor) and await _flowing(again)
        room = node.sfu.rooms["visit-r"]
        assert room.ends_at == whole(end)  # S2, S5: the same visit, the same end
        kinds = [e.kind for e in node.events.events]
        assert kinds.count("participant_joined") == 3 and kinds.count("participant_left") == 1
        assert kinds.count("started") == 1 and "ended" not in kinds  # the visit did not restart
        await again.close()
    finally:
        await visitor.close()


async def test_s5_an_unknown_resume_token_is_refused_and_the_client_asks_for_a_join_token(node: Stack) -> None:
    client = await connect(node, None, resume="made-up")
    assert client.messages[-1]["type"] == "error" and client.messages[-1]["code"] == "bad-resume"
    await client.close()


async def test_s5_a_resume_takes_the_place_and_the_replaced_socket_is_told(node: Stack) -> None:
    start, end = now() - timedelta(seconds=1), now() + timedelta(minutes=20)
    visitor = await connect(node, node.token("visit-x", "user-1", "visitor", start=start, end=end))
    resume = visitor.messages[0]["resume_token"]
    second = await connect(node, None, resume=resume)  # e.g. a copied token, while the first is connected
    try:
        replaced = await visitor.wait_message("error", within=5)
        assert replaced["code"] == "replaced"
        assert node.sfu.rooms["visit-x"].participants["visitor"].send is not None
        assert second.messages[0]["type"] == "joined"
    finally:
        await visitor.close()
        await second.close()


async def test_s2_a_resume_token_never_reopens_an_ended_visit(node: Stack) -> None:
    start, end = now() - timedelta(seconds=1), now() + timedelta(seconds=3)
    visitor = await connect(node, node.token("visit-e", "user-1", "visitor", start=start, end=end))
    resume = visitor.messages[0]["resume_token"]
    await visitor.wait_message("ended", within=8)
    await visitor.close()
    late = await connect(node, None, resume=resume)
    assert late.messages[-1]["type"] == "error" and late.messages[-1]["code"] in ("visit-ended", "bad-resume")
    await late.close()


async def test_s1_s5_after_a_node_restart_used_tokens_stay_used_and_resume_recreates_the_room(
        tmp_path: Path, loopback_only: None) -> None:
    key = Ed25519PrivateKey.generate()
    state_file = tmp_path / "state.sqlite3"
    first, first_runner = await _node(key, state_file)
    start, end = now() - timedelta(seconds=1), now() + timedelta(minutes=20)
    visitor_token = first.token("visit-n", "user-1", "visitor", start=start, end=end)
    visitor = await connect(first, visitor_token)
    resume = visitor.messages[0]["resume_token"]
    await visitor.close()
    # The node dies without ending its rooms (as after kill -9), and starts again on the same state.
    await first_runner.cleanup()  # type: ignore[attr-defined]
    second, second_runner = await _node(key, state_file)
    try:
        replay = await connect(second, visitor_token)
        assert replay.messages[-1]["code"] == "token-used"  # S1: used stays used
        await replay.close()
        again = await connect(second, None, resume=resume)
        assert again.messages[0]["type"] == "joined" and again.messages[0]["ends_at"] == whole(end).isoformat()
        resident = await connect(second, second.token("visit-n", "resident-9", "resident", start=start, end=end))
        assert await _flowing(again) and await _flowing(resident)
        room = second.sfu.rooms["visit-n"]
        assert room.ends_at == whole(end) and room.session_id != first.sfu.rooms["visit-n"].session_id
        await again.close()
        await resident.close()
    finally:
        for stack in (first, second):
            await stack.sfu.close()
            await stack.sfu.state.close()
        await second_runner.cleanup()  # type: ignore[attr-defined]
