"""Memoized database lookups for the request hot path, dropped on any database write.

Every repository GET needs the key behind a secret (or an access token), the organization, and
for user keys the user's role; a tarball GET also needs the release's checksum. Those change
rarely, so they are kept in memory and the whole cache is thrown away whenever
``db.generation()`` moves, which every committed write_tx() does, in this process or any other
(the CLI, another worker, on PostgreSQL another node). The generation is read before the database, so a revoked key, a removed member or a
disabled user is refused on the very next request. Time-based expiry (rotation grace periods,
token lifetimes) is checked on every use, not cached.
"""

import threading

from appliance import keys, orgs, packages
from appliance.db import generation
from appliance.errors import NotFound
from appliance.identity import device

MAX_ENTRIES = 10_000  # per map; unknown secrets are cached too, so the cache must stay bounded


class LookupCache:
    def __init__(self):
        self._lock = threading.Lock()
        self._generation = None
        self._reset()

    def _reset(self):
        self._keys, self._orgs, self._roles, self._releases, self._key_ids = {}, {}, {}, {}, {}
        self._grants = {}

    def _current(self):
        gen = generation()
        if gen != self._generation:
            with self._lock:
                if gen != self._generation:
                    self._reset()
                    self._generation = gen
        return self._keys, self._orgs, self._roles, self._releases, self._key_ids

    @staticmethod
    def _remember(table, key, value):
        if len(table) >= MAX_ENTRIES:
            table.clear()
        table[key] = value

    def key(self, app_secret, secret):
        """keys.authenticate with a memoized lookup: the active key or Unauthenticated."""
        return keys.authenticate(app_secret, secret, finder=self._find)

    def _find(self, app_secret, secret):
        table = self._current()[0]
        digest = keys.lookup_digest(app_secret, secret)
        if digest not in table:
            self._remember(table, digest, keys.find(app_secret, secret))
        return table[digest]

    def token_key(self, app_secret, token):
        """keys.authenticate_token with the key looked up by id through the memo."""
        return keys.authenticate_token(app_secret, token, finder=self._find_id)

    def _find_id(self, key_id):
        table = self._current()[4]
        if key_id not in table:
            self._remember(table, key_id, keys.find_by_id(key_id))
        return table[key_id]

    def grant(self, app_secret, token):
        """identity.device.authenticate with the grant (and its user) looked up by id through the memo."""
        return device.authenticate(app_secret, token, finder=self._find_grant)

    def _find_grant(self, grant_id):
        self._current()
        table = self._grants
        if grant_id not in table:
            grant = device.find_by_id(grant_id)
            if grant is not None:
                grant.user  # loaded now, so a cached grant carries its user's state at this generation
            self._remember(table, grant_id, grant)
        return table[grant_id]

    def org(self, name):
        table = self._current()[1]
        hit = table.get(name)
        if hit is None:
            try:
                hit = orgs.get(name)
            except NotFound as exc:
                hit = exc
            self._remember(table, name, hit)
        if isinstance(hit, NotFound):
            raise NotFound(hit.message)
        return hit

    def role_of(self, user, org):
        table = self._current()[2]
        cache_key = (user.id, org.id)
        if cache_key not in table:
            self._remember(table, cache_key, orgs.role_of(user, org))
        return table[cache_key]

    def release_file(self, org, name, version):
        """packages.release_file, memoized: (outer checksum hex, size) or None."""
        table = self._current()[3]
        cache_key = (org.id, name, version)
        if cache_key not in table:
            self._remember(table, cache_key, packages.release_file(org, name, version))
        return table[cache_key]
