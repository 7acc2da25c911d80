"""LDAP / Active Directory logins with ``ldap3``: search with a service account, then bind as
the person found.

1. Connect to the first of ``ldap_urls`` that answers (failover in the order given), over
   ``ldaps://`` or, for ``ldap://``, StartTLS (``ldap_start_tls``), verifying the server's
   certificate against ``ldap_ca_file`` (or the system's CAs).
2. Bind as ``ldap_bind_dn`` with the password read from ``ldap_bind_password_file``.
3. Search ``ldap_base_dn`` with ``ldap_user_filter``; the typed name goes in escaped
   (RFC 4515), so ``*)(uid=*`` matches nobody. Exactly one entry must match.
4. Bind as that entry's DN with the typed password (an empty password is refused before: LDAP
   would take it as an anonymous bind and "succeed").
5. Groups: ``ldap_group_filter`` under ``ldap_group_base_dn`` with the DN escaped; on Active
   Directory ``(member:1.2.840.113556.1.4.1941:={dn})`` also finds nested groups.

Any network or TLS failure, or a refused service account, is ``DirectoryUnavailable``: the
login is refused with that message and nothing is concluded about the person. Passwords are
never logged.
"""

import logging
import ssl
import urllib.parse

import ldap3
from ldap3.core.exceptions import LDAPException, LDAPStartTLSError
from ldap3.utils.conv import escape_filter_chars

from appliance import accounts
from appliance.errors import DirectoryUnavailable
from appliance.identity import LDAP, Identity

log = logging.getLogger(__name__)


class LdapDirectory:
    """The LDAP provider of appliance/identity/__init__.py, built from the ``ldap_*`` settings."""

    def __init__(self, config):
        self.config = config
        self.group_roles = config.ldap_group_roles
        self.timeout = config.ldap_timeout
        tls = ldap3.Tls(ca_certs_file=config.ldap_ca_file or None, validate=ssl.CERT_REQUIRED,
                        version=ssl.PROTOCOL_TLS_CLIENT)
        self.servers = []
        for url in config.ldap_urls:
            parts = urllib.parse.urlsplit(url)
            secure = parts.scheme == "ldaps"
            self.servers.append(ldap3.Server(parts.hostname, port=parts.port or (636 if secure else 389),
                                             use_ssl=secure, tls=tls, get_info=ldap3.NONE,
                                             connect_timeout=self.timeout))

    def _bind_password(self):
        try:
            with open(self.config.ldap_bind_password_file, encoding="utf-8") as fh:
                return fh.read().strip("\r\n")
        except OSError as exc:
            log.error("cannot read ldap_bind_password_file %s: %s", self.config.ldap_bind_password_file,
                      exc.strerror)
            raise DirectoryUnavailable() from None

    def _connect(self, dn, password):
        """(connection, bound) to the first server that answers, bound as ``dn``; raises
        DirectoryUnavailable when none does."""
        for server in self.servers:
            # ldap3 packs receive_timeout into SO_RCVTIMEO as whole seconds.
            conn = ldap3.Connection(server, user=dn, password=password, receive_timeout=max(1, round(self.timeout)),
                                    raise_exceptions=False, read_only=True)
            try:
                conn.open()
                if not server.ssl and self.config.ldap_start_tls and not conn.start_tls():
                    raise LDAPStartTLSError("the server refused StartTLS")
                return conn, conn.bind()
            except LDAPException as exc:
                # The next server may answer; the reason (never a password) is for the admin.
                log.warning("LDAP server %s unavailable: %s", server.name, type(exc).__name__)
                _close(conn)
        raise DirectoryUnavailable()

    def _service(self):
        conn, bound = self._connect(self.config.ldap_bind_dn or None, self._bind_password())
        if not bound:
            log.error("the LDAP service account %s was refused: %s", self.config.ldap_bind_dn,
                      conn.result.get("description"))
            _close(conn)
            raise DirectoryUnavailable()
        return conn

    def _search(self, conn, base, search_filter, attributes):
        try:
            conn.search(base, search_filter, ldap3.SUBTREE, attributes=attributes, size_limit=0)
        except LDAPException as exc:
            log.warning("LDAP search failed: %s", type(exc).__name__)
            raise DirectoryUnavailable() from None
        if conn.result.get("result") not in (0, 4):  # success, sizeLimitExceeded
            log.warning("LDAP search failed: %s", conn.result.get("description"))
            raise DirectoryUnavailable()
        return [e for e in conn.response or () if e.get("type") == "searchResEntry"]

    def _lookup(self, conn, username):
        """The one entry matching ``username`` as an Identity, else None."""
        name = accounts.canonical_username(username)
        if not name or not accounts.USERNAME_RE.fullmatch(name):
            return None  # not a name Hexvault could hold; the directory is not asked
        search_filter = self.config.ldap_user_filter.replace("{username}", escape_filter_chars(name))
        attributes = [a for a in (self.config.ldap_email_attribute, self.config.ldap_name_attribute) if a]
        entries = self._search(conn, self.config.ldap_base_dn, search_filter, attributes)
        if len(entries) != 1:
            return None
        entry = entries[0]
        return Identity(username=name, source=LDAP, subject=entry["dn"],
                        email=_first(entry, self.config.ldap_email_attribute),
                        full_name=_first(entry, self.config.ldap_name_attribute))

    def find(self, username):
        """The directory's Identity for ``username`` without their password (for sync), or None."""
        conn = self._service()
        try:
            return self._lookup(conn, username)
        finally:
            conn.unbind()

    def authenticate(self, username, password):
        if not password:
            return None
        conn = self._service()
        try:
            identity = self._lookup(conn, username)
        finally:
            conn.unbind()
        if identity is None:
            return None
        user_conn, bound = self._connect(identity.subject, password)
        user_conn.unbind()
        return identity if bound else None

    def groups(self, identity):
        conn = self._service()
        try:
            search_filter = self.config.ldap_group_filter.replace("{dn}", escape_filter_chars(identity.subject))
            entries = self._search(conn, self.config.ldap_group_base_dn or self.config.ldap_base_dn,
                                   search_filter, [])
        finally:
            conn.unbind()
        return [e["dn"] for e in entries]


def _close(conn):
    """Close a connection that failed half-way: ldap3 leaves the socket of a failed connect or
    TLS handshake open."""
    try:
        conn.unbind()
    except LDAPException:
        pass
    if conn.socket is not None:
        conn.socket.close()


def _first(entry, attribute):
    if not attribute:
        return None
    value = entry.get("attributes", {}).get(attribute)
    if isinstance(value, list):
        value = value[0] if value else None
    return str(value) if value not in (None, "") else None


def from_config(config):
    """The directory of ``config``, or None when no ``ldap_urls`` are set."""
    return LdapDirectory(config) if config.ldap_urls else None
