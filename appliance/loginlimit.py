"""Failed password logins, limited so that guessing is slow and nobody can lock anyone else out.

Both ways a password arrives go through ``checked_login``: the admin UI's login form (and its
account page) and HTTP Basic auth on the API and repositories (hex-protocol.md §2.2). Every
failure is a ``LoginFailure`` row, kept for ``WINDOW``, so every process sharing the database
(several workers, a restarted server, the CLI) counts the same failures. Three limits apply:

- one account from one address: ``PAIR_MAX_FAILURES`` within the window block that pair until
  the oldest of them ages out. Guessing from your own address locks only yourself out.
- one address, any accounts: ``ADDRESS_MAX_FAILURES`` within the window block the address (one
  client spraying a password over many accounts).
- one account, every address: from ``ACCOUNT_BACKOFF_AFTER`` failures within the window on, an
  address that has failed for the account waits ``backoff(n)`` after the account's latest
  failure, doubling with each one (many addresses guessing together). An address with no recent
  failure for the account is never held back by the others, so a correct password from a clean
  address always gets in.

A success clears its own pair only: the owner logging in must not hand a guesser fresh attempts.
``unlock`` (``hexvault user unlock USER``) clears every failure recorded against an account.

Checks only read and only failures write, so a correct password costs no write; the price is
that guesses sent in parallel all pass the check before any is recorded, so a burst can exceed a
limit by the requests in flight at once (the server's worker threads), each still paying bcrypt.
"""

import math
import time

from appliance import accounts, audit
from appliance.identity import totp
from appliance.db import write_tx
from appliance.errors import Busy, RateLimited, Unauthenticated
from appliance.models import LoginFailure

WINDOW = 15 * 60
PAIR_MAX_FAILURES = 5
ADDRESS_MAX_FAILURES = 20
ACCOUNT_BACKOFF_AFTER = 10
BACKOFF_BASE = 15  # seconds of the first back-off; it doubles with every further failure
MAX_ACCOUNT_CHARS = 100  # usernames are at most 40; a longer guess is stored cut
# Failures of one account worth reading: beyond these the back-off is at its WINDOW cap anyway.
_BACKOFF_ROWS = ACCOUNT_BACKOFF_AFTER + math.ceil(math.log2(WINDOW / BACKOFF_BASE))


def account_key(username):
    return (username or "").strip().lower()[:MAX_ACCOUNT_CHARS]


def backoff(failures):
    """Seconds an address that failed for an account waits after the account's latest failure,
    given the account's failures within the window (0 below ACCOUNT_BACKOFF_AFTER)."""
    if failures < ACCOUNT_BACKOFF_AFTER:
        return 0
    return min(BACKOFF_BASE * 2 ** (failures - ACCOUNT_BACKOFF_AFTER), WINDOW)


class LoginLimits:
    """The three limits over the ``LoginFailure`` table; ``clock`` (Unix seconds, shared by every
    process) is replaceable so tests can let time pass."""

    def __init__(self, clock=time.time):
        self._clock = clock

    def _recent(self, where, since, limit):
        """Failure times matching ``where`` since ``since``, newest first, at most ``limit``."""
        query = (LoginFailure.select(LoginFailure.failed_at).where(where & (LoginFailure.failed_at > since))
                 .order_by(LoginFailure.failed_at.desc()).limit(limit))
        return [row.failed_at for row in query]

    def blocked_for(self, username, address):
        """Seconds until ``address`` may try a password for ``username`` again (0: now)."""
        account, address, now = account_key(username), address or "", self._clock()
        since = now - WINDOW
        waits = [0]
        pair = self._recent((LoginFailure.account == account) & (LoginFailure.address == address), since,
                            PAIR_MAX_FAILURES)
        if len(pair) >= PAIR_MAX_FAILURES:
            waits.append(pair[-1] + WINDOW - now)
        from_address = self._recent(LoginFailure.address == address, since, ADDRESS_MAX_FAILURES)
        if len(from_address) >= ADDRESS_MAX_FAILURES:
            waits.append(from_address[-1] + WINDOW - now)
        if pair:  # only addresses that failed for this account share its back-off
            of_account = self._recent(LoginFailure.account == account, since, _BACKOFF_ROWS)
            waits.append(of_account[0] + backoff(len(of_account)) - now)
        return max(waits)

    def record_failure(self, username, address):
        now = self._clock()
        with write_tx():
            # Rows older than the window count for nothing: dropping them here bounds the table.
            LoginFailure.delete().where(LoginFailure.failed_at <= now - WINDOW).execute()
            LoginFailure.create(account=account_key(username), address=address or "", failed_at=now)

    def record_success(self, username, address):
        pair = (LoginFailure.account == account_key(username)) & (LoginFailure.address == (address or ""))
        if LoginFailure.select().where(pair).exists():  # the usual case writes nothing
            try:
                with write_tx():
                    LoginFailure.delete().where(pair).execute()
            except Busy:
                pass  # the login stands; the failures age out, or the next success clears them


def unlock(username, *, actor=audit.CLI):
    """Forget every failed login of ``username`` from every address; returns how many."""
    account = account_key(username)
    with write_tx():
        cleared = LoginFailure.delete().where(LoginFailure.account == account).execute()
        audit.record(actor, "user.unlock", target=account, failures=cleared)
    return cleared


def _wait_text(seconds):
    seconds = int(seconds) + 1
    if seconds < 120:
        return f"{seconds} seconds"
    return f"{-(-seconds // 60)} minutes"


def checked_login(limits, username, password, ip, rounds, directory=None):
    """accounts.check_login behind ``limits``: RateLimited while this address may not try this
    account, a failure recorded, a success clearing this address's failures for the account.
    A directory that cannot answer (DirectoryUnavailable) records nothing: no one guessed."""
    wait = limits.blocked_for(username, ip)
    if wait > 0:
        raise RateLimited(f"too many failed logins; try again in {_wait_text(wait)}")
    try:
        user = accounts.check_login(username, password, rounds=rounds, directory=directory)
    except Unauthenticated:
        limits.record_failure(username, ip)
        raise
    limits.record_success(username, ip)
    return user


def checked_code(limits, user, code, ip, app_secret, *, actor=audit.CLI):
    """totp.verify behind the same limits as the password (a wrong code is a failed login of the
    account): six digits are guessed in a million tries, not a few."""
    wait = limits.blocked_for(user.username, ip)
    if wait > 0:
        raise RateLimited(f"too many failed logins; try again in {_wait_text(wait)}")
    if not totp.verify(app_secret, user, code, actor=actor):
        limits.record_failure(user.username, ip)
        raise Unauthenticated("that two-factor code is wrong or was already used")
    limits.record_success(user.username, ip)
