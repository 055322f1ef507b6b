"""The relational model. Rule numbers refer to ../shared/domain-rules.md.

Times are UTC instants (`UTCDateTime`); wall-clock schedule data (visitation windows) is stored
as minutes after local midnight and evaluated in the facility's time zone (A1). Money is
integer cents; balances are never stored, they are sums of ledger entries (M1).

One module per area; every model is re-exported here, so `from control_api.db.models import X`
and Alembic (which reads `Base.metadata`) see the whole model."""

from __future__ import annotations

from control_api.db.models.audit import AuditEntry, AuditHead
from control_api.db.models.base import NAMING, Base
from control_api.db.models.facilities import Closure, Facility, FeeItem, HousingUnit, SessionOption, VisitationWindow
from control_api.db.models.media import MediaNode, MediaSession
from control_api.db.models.money import CreditDraw, CreditLot, CreditRequest, LedgerEntry, LedgerTransaction, Payment
from control_api.db.models.people import AccessRequest, BarVerification, Kiosk, Resident, User
from control_api.db.models.recordings import Recording, RecordingFile, RecordingFlag
from control_api.db.models.requests import ClockState, IdempotentResponse
from control_api.db.models.sign_in import AccountToken, AuthSession, LoginThrottle, MailMessage, RecoveryCode
from control_api.db.models.visits import KioskNotification, Visit, VisitEvent

__all__ = [
    "NAMING",
    "AccessRequest",
    "AccountToken",
    "AuditEntry",
    "AuditHead",
    "AuthSession",
    "BarVerification",
    "Base",
    "ClockState",
    "Closure",
    "CreditDraw",
    "CreditLot",
    "CreditRequest",
    "Facility",
    "FeeItem",
    "HousingUnit",
    "IdempotentResponse",
    "Kiosk",
    "KioskNotification",
    "LedgerEntry",
    "LedgerTransaction",
    "LoginThrottle",
    "MailMessage",
    "MediaNode",
    "MediaSession",
    "Payment",
    "Recording",
    "RecordingFile",
    "RecordingFlag",
    "RecoveryCode",
    "Resident",
    "SessionOption",
    "User",
    "Visit",
    "VisitEvent",
    "VisitationWindow",
]
