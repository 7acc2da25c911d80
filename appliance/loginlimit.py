"""Failed password logins, limited per account and per client address (in memory).

Both ways a password arrives share one tracker per server: the admin UI's login form and HTTP
Basic auth on the API and repositories (hex-protocol.md §2.2). Five failures within fifteen
minutes block that account, and that address, until the oldest failure ages out.
"""

import collections
import threading
import time

from appliance import accounts
from appliance.errors import RateLimited, Unauthenticated

MAX_FAILURES = 5
WINDOW = 15 * 60
MAX_TRACKED = 50_000  # keys kept at most; beyond that, the ones with no recent failure go


class FailedLogins:
    def __init__(self, clock=time.monotonic):
        self._seen = {}
        self._lock = threading.Lock()
        self._clock = clock

    def _recent(self, key, now):
        """Failures of ``key`` within the window (a deque), or None; empty entries are dropped."""
        seen = self._seen.get(key)
        if seen is None:
            return None
        while seen and seen[0] < now - WINDOW:
            seen.popleft()
        if not seen:
            del self._seen[key]
            return None
        return seen

    def blocked_for(self, *keys):
        """Seconds until every key may try again (0: not blocked)."""
        now = self._clock()
        with self._lock:
            waits = []
            for key in keys:
                seen = self._recent(key, now)
                if seen is not None and len(seen) >= MAX_FAILURES:
                    waits.append(seen[0] + WINDOW - now)
        return max(waits) if waits else 0

    def fail(self, *keys):
        now = self._clock()
        with self._lock:
            if len(self._seen) >= MAX_TRACKED:
                for key in list(self._seen):
                    self._recent(key, now)
            for key in keys:
                self._seen.setdefault(key, collections.deque(maxlen=MAX_FAILURES)).append(now)

    def clear(self, key):
        with self._lock:
            self._seen.pop(key, None)

    def tracked(self):
        return len(self._seen)


def keys_for(username, ip):
    return f"user:{(username or '').strip().lower()}", f"ip:{ip}"


def checked_login(limits, username, password, ip, rounds):
    """accounts.check_login behind ``limits``: RateLimited while the account or address is
    blocked, a failure counted against both, a success clearing the account."""
    keys = keys_for(username, ip)
    wait = limits.blocked_for(*keys)
    if wait:
        raise RateLimited(f"too many failed logins; try again in {int(wait // 60) + 1} minutes")
    try:
        user = accounts.check_login(username, password, rounds=rounds)
    except Unauthenticated:
        limits.fail(*keys)
        raise
    limits.clear(keys[0])
    return user
