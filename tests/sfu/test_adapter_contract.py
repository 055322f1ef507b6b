"""The adapter's private-name contract (sfu/aiortc_adapter/contract.py): every aiortc, aioice and
pylibsrtp internal the SFU relies on is listed once, checked at import against the installed
versions, and reached only through the contract module."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from aiortc import RTCRtpReceiver, RTCRtpSender
from aiortc.rtcdtlstransport import RTCDtlsTransport

from sfu.aiortc_adapter import contract
from sfu.aiortc_adapter.contract import PRIVATE_NAMES, AdapterContractError, PrivateName, check_contract

ROOT = Path(__file__).resolve().parents[2]


class _StubReceiver:
    """Stands in for an aiortc release that renamed two things the adapter relies on."""

    def __init__(self) -> None:
        self._StubReceiver__codecs: dict[int, object] = {}
        self._renamed_enabled = True

    async def _send_rtcp(self, packet: object) -> None:
        return None


def test_the_installed_aiortc_has_every_listed_name() -> None:
    assert contract.missing_names(PRIVATE_NAMES) == []
    check_contract()  # what importing the adapter runs


def test_a_missing_name_fails_with_a_message_naming_it_and_the_installed_version() -> None:
    table = (
        PrivateName(_StubReceiver, "_StubReceiver__codecs", "attribute", "payload type -> codec"),
        PrivateName(_StubReceiver, "_send_rtcp", "method", "RTCP out"),
        PrivateName(_StubReceiver, "_enabled", "attribute", "a disabled receiver drops its packets", "Python and C"),
        PrivateName(_StubReceiver, "_send_rtcp_pli", "method", "keyframe requests"),
    )
    assert [entry.name for entry in contract.missing_names(table)] == ["_enabled", "_send_rtcp_pli"]
    with pytest.raises(AdapterContractError) as failure:
        check_contract(table)
    message = str(failure.value)
    assert "_StubReceiver._enabled (attribute, used from Python and C: a disabled receiver drops its packets)" \
        in message
    assert "_StubReceiver._send_rtcp_pli (method" in message
    assert "_StubReceiver__codecs" not in message and "_StubReceiver._send_rtcp " not in message
    assert "aiortc 1." in message and "aioice 0." in message  # the versions actually installed
    assert "sfu/aiortc_adapter/contract.py" in message


def test_instance_attributes_are_found_without_an_instance() -> None:
    """aiortc sets most of these in __init__: the check reads the names its methods assign."""
    assert not contract.missing_names([PrivateName(RTCDtlsTransport, "_tx_srtp", "attribute", "")])
    assert contract.missing_names([PrivateName(RTCDtlsTransport, "_tx_srtp_renamed", "attribute", "")])


def test_the_names_the_c_extension_uses_are_listed() -> None:
    """The C Tap reads a receiver's `_enabled` and fills its remote-streams dict; the C Sender
    checks the DTLS transport's `_state` and `_tx_srtp` and reads the nominated pairs."""
    from_c = {(entry.owner, entry.name) for entry in PRIVATE_NAMES if "C" in entry.used_from.split()}
    assert {(RTCRtpReceiver, "_enabled"), (RTCRtpReceiver, "_RTCRtpReceiver__remote_streams"),
            (RTCDtlsTransport, "_state"), (RTCDtlsTransport, "_tx_srtp")} <= from_c
    assert any(entry.name == "_nominated" for entry in PRIVATE_NAMES if "C" in entry.used_from)


def test_private_accessors_fail_clearly_on_an_object_without_the_name() -> None:
    with pytest.raises(AdapterContractError, match=r"RTCRtpSender.__force_keyframe is gone"):
        contract.redirect_keyframe_requests(object(), lambda: None)  # type: ignore[arg-type]
    assert contract.private(_StubReceiver(), _StubReceiver, "codecs") == {}
    with pytest.raises(AdapterContractError):
        contract.private(_StubReceiver(), RTCRtpSender, "ntp_timestamp")


def test_no_module_but_the_contract_spells_a_listed_private_name() -> None:
    """The adapter's other modules, the media side (Python and C), the control plane, the tools,
    benchmarks, load tests and test helpers reach aiortc's internals through the contract only."""
    names = sorted({entry.name for entry in PRIVATE_NAMES if entry.name.startswith("_")})
    spelled = re.compile(r"(?:\.|[\"'])(" + "|".join(map(re.escape, names)) + r")\b")
    files = [*ROOT.glob("sfu/**/*.py"), *ROOT.glob("sfu/native/*.[ch]"), *ROOT.glob("signaling/**/*.py"),
             *ROOT.glob("control_api/**/*.py"), *ROOT.glob("openvisit/**/*.py"), *ROOT.glob("loadtests/**/*.py"),
             *ROOT.glob("benchmarks/*.py"), ROOT / "tests/support_shaped_link.py", ROOT / "tests/turn_client.py"]
    assert any(path.suffix == ".c" for path in files)
    found = [f"{path.relative_to(ROOT)}:{number}: {match.group(1)}"
             for path in files if path.name != "contract.py"
             for number, line in enumerate(path.read_text().splitlines(), 1)
             for match in spelled.finditer(line)]
    assert found == []
