"""The texts of account mail (confirmation, reset, notices), queued with `control_api.mail`.

Plain text on purpose: links are written out so they survive any mail client. Each text says
what to do if the reader did not ask for it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from control_api.mail import queue_mail
from openvisit.settings import Settings


def base_url(settings: Settings) -> str:
    scheme = "https" if settings.tls_enabled else "http"  # `openvisit serve --tls-cert` (issue 14)
    return (settings.public_url or f"{scheme}://{settings.host}:{settings.port}").rstrip("/")


def _minutes(ttl: timedelta) -> int:
    return int(ttl.total_seconds() // 60)


def confirm_email(session: AsyncSession, settings: Settings, *, to: str, name: str, token: str,
                  ttl: timedelta, now: datetime) -> None:
    link = f"{base_url(settings)}/app/account.html#confirm={token}"
    queue_mail(session, to=to, kind="confirm-email", now=now, subject="Confirm your email for openvisit", body=(
        f"Hello {name},\n\nPlease confirm this email address for your openvisit account:\n\n{link}\n\n"
        f"Or enter this confirmation code: {token}\n\nThe link works once and expires in {_minutes(ttl)} "
        "minutes. If you did not sign up for openvisit, ignore this mail: nothing happens without it.\n"))


def sign_up_attempt_on_existing(session: AsyncSession, settings: Settings, *, to: str, name: str,
                                now: datetime) -> None:
    """Sign-up does not say whether an address has an account; its holder hears of the attempt."""
    queue_mail(session, to=to, kind="sign-up-existing", now=now, subject="Someone tried to sign up with your email",
               body=(f"Hello {name},\n\nSomeone (perhaps you) tried to create a new openvisit account with this "
                     f"email address, which already has one. To sign in: {base_url(settings)}/app/\n"
                     f"Forgot your password? Reset it here: {base_url(settings)}/app/account.html#forgot\n\n"
                     "If this was not you, you need not do anything: your account is unchanged.\n"))


def password_reset(session: AsyncSession, settings: Settings, *, to: str, name: str, token: str,
                   ttl: timedelta, now: datetime) -> None:
    link = f"{base_url(settings)}/app/account.html#reset={token}"
    queue_mail(session, to=to, kind="reset-password", now=now, subject="Reset your openvisit password", body=(
        f"Hello {name},\n\nTo choose a new password, open:\n\n{link}\n\nOr enter this reset code: {token}\n\n"
        f"The link works once and expires in {_minutes(ttl)} minutes. Resetting signs out every device. "
        "If you did not ask for this, ignore this mail: your password stays as it is.\n"))


def password_changed(session: AsyncSession, *, to: str, name: str, how: str, now: datetime) -> None:
    queue_mail(session, to=to, kind="password-changed", now=now, subject="Your openvisit password was changed",
               body=(f"Hello {name},\n\nThe password of your openvisit account was changed ({how}) at "
                     f"{now:%Y-%m-%d %H:%M} UTC, and every other device was signed out.\n\n"
                     "If this was not you, reset your password at once and tell the facility.\n"))


def sign_in_blocked(session: AsyncSession, *, to: str, name: str, failures: int, until: datetime,
                    now: datetime) -> None:
    queue_mail(session, to=to, kind="sign-in-blocked", now=now, subject="Sign-in attempts on your openvisit account",
               body=(f"Hello {name},\n\nThere were {failures} failed sign-in attempts on your openvisit account. "
                     f"Sign-in is paused until {until:%Y-%m-%d %H:%M} UTC; it then resumes by itself.\n\n"
                     "If this was you, wait and try again, or reset your password. If it was not, your "
                     "password held; consider changing it to a longer one.\n"))


def second_factor_changed(session: AsyncSession, *, to: str, name: str, enabled: bool, now: datetime) -> None:
    state = "turned on" if enabled else "turned off"
    queue_mail(session, to=to, kind="second-factor", now=now, subject=f"Two-step sign-in {state}",
               body=(f"Hello {name},\n\nTwo-step sign-in (an authenticator app code) was {state} for your "
                     f"openvisit account at {now:%Y-%m-%d %H:%M} UTC.\n\n"
                     "If this was not you, reset your password at once and tell the facility.\n"))
