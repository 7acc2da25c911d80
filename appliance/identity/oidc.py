"""OpenID Connect single sign-on for the web UI (Authlib as the client).

The provider is found by discovery from ``oidc_issuer``. A sign-in is the authorization code flow
with PKCE (S256), a random ``state`` (against login CSRF) and ``nonce`` (against a replayed ID
token), all three kept in the browser's signed session until the provider sends it back. The ID
token's signature (the provider's JWKS), issuer, audience, expiry and nonce are checked before any
claim is believed. Claims make the user (``auth_source`` "oidc"): the username from
``oidc_username_claim``, e-mail and name; memberships follow ``oidc_group_roles`` from the groups
claim at every sign-in, exactly as ``ldap_group_roles`` does for directory logins.

An SSO user has no local password. A local (or directory) account is never taken over by an
identity of the same name: that sign-in is refused, so a provider user called "admin" cannot
become the break-glass administrator.
"""

import secrets
import threading
import time
import warnings

import requests
from authlib.integrations.requests_client import OAuth2Session
with warnings.catch_warnings():
    # Authlib 1.6 marks authlib.jose deprecated in favour of joserfc (still supported before
    # Authlib 2.0); said once at import, it would be the server's first log line, outside the log format.
    warnings.simplefilter("ignore", DeprecationWarning)
    from authlib.jose import JsonWebKey, jwt
    from authlib.jose.errors import JoseError

from appliance import accounts, audit, identity
from appliance.errors import HexvaultError, Unauthenticated
from appliance.models import User

SCOPE = "openid email profile"
DISCOVERY_TTL = 3600  # the provider's keys rotate; metadata and JWKS are fetched again after this
LEEWAY = 60  # seconds of clock difference allowed on exp/iat


class SSOUnavailable(HexvaultError):
    """The provider cannot be reached or answers nonsense: a clear message, never a login."""

    status = 502


class Provider:
    """One configured OpenID Provider: discovery, the sign-in redirect, and the callback."""

    def __init__(self, config):
        self.config = config
        self.issuer = config.oidc_issuer.rstrip("/")
        self.client_secret = _read_secret(config.oidc_client_secret_file)
        self.verify = config.oidc_ca_file or True
        self._metadata = None  # (fetched at, metadata, JWKS)
        self._lock = threading.Lock()

    def _get_json(self, url):
        try:
            response = requests.get(url, timeout=10, verify=self.verify)
            response.raise_for_status()
            return response.json()
        except (requests.RequestException, ValueError) as exc:
            raise SSOUnavailable(f"the sign-in provider cannot be reached ({type(exc).__name__}); "
                                 "try again later or log in with a password") from None

    def metadata(self, refresh=False):
        with self._lock:
            if refresh or self._metadata is None or time.monotonic() - self._metadata[0] > DISCOVERY_TTL:
                meta = self._get_json(self.issuer + "/.well-known/openid-configuration")
                if meta.get("issuer", "").rstrip("/") != self.issuer:
                    raise SSOUnavailable("the sign-in provider's discovery document names another issuer")
                keys = JsonWebKey.import_key_set(self._get_json(meta["jwks_uri"]))
                self._metadata = (time.monotonic(), meta, keys)
            return self._metadata[1], self._metadata[2]

    def _session(self, redirect_uri):
        return OAuth2Session(self.config.oidc_client_id, self.client_secret, scope=SCOPE, redirect_uri=redirect_uri,
                             code_challenge_method="S256",
                             token_endpoint_auth_method="client_secret_basic" if self.client_secret else "none")

    def begin(self, redirect_uri):
        """(URL to send the browser to, what the session must keep for the callback)."""
        meta, _keys = self.metadata()
        pending = {"state": secrets.token_urlsafe(24), "nonce": secrets.token_urlsafe(24),
                   "verifier": secrets.token_urlsafe(48), "at": time.time()}
        url, _state = self._session(redirect_uri).create_authorization_url(
            meta["authorization_endpoint"], state=pending["state"], nonce=pending["nonce"],
            code_verifier=pending["verifier"])
        return url, pending

    def finish(self, redirect_uri, pending, args):
        """The verified ID token claims for the provider's answer ``args``, else Unauthenticated."""
        if not pending or not secrets.compare_digest(str(args.get("state") or ""), pending.get("state", "")):
            raise Unauthenticated("the sign-in did not start here or was already used; try again")
        if args.get("error"):
            raise Unauthenticated(f"the sign-in provider refused: {str(args.get('error'))[:100]}")
        if time.time() - pending.get("at", 0) > 600:
            raise Unauthenticated("the sign-in took too long; try again")
        meta, _keys = self.metadata()
        try:
            token = self._session(redirect_uri).fetch_token(
                meta["token_endpoint"], code=args.get("code"), code_verifier=pending["verifier"],
                grant_type="authorization_code", verify=self.verify, timeout=10)
        except Exception as exc:  # Authlib raises OAuthError, requests its own: either way no login
            raise Unauthenticated(f"the sign-in provider did not issue a token ({type(exc).__name__})") from None
        if "id_token" not in token:
            raise Unauthenticated("the sign-in provider sent no ID token")
        return self.verify_id_token(token["id_token"], pending["nonce"])

    def verify_id_token(self, id_token, nonce):
        options = {"iss": {"essential": True, "values": [self.issuer, self.issuer + "/"]},
                   "aud": {"essential": True, "value": self.config.oidc_client_id},
                   "exp": {"essential": True}, "sub": {"essential": True},
                   "nonce": {"essential": True, "value": nonce}}
        for attempt in (0, 1):
            _meta, keys = self.metadata(refresh=attempt == 1)  # a new signing key: fetch the JWKS again
            try:
                claims = jwt.decode(id_token, keys, claims_options=options)
                claims.validate(leeway=LEEWAY)
                return dict(claims)
            except JoseError as exc:
                if attempt == 1 or "key" not in str(exc).lower():
                    raise Unauthenticated(f"the ID token was refused: {exc.description or exc.error}") from None
        raise AssertionError("unreachable")


def _read_secret(path):
    if not path:
        return None
    with open(path) as fh:
        return fh.read().strip()


def username_from(claims, claim):
    """The Hexvault username a claim names: lowercased, an e-mail's domain dropped (Azure AD and
    ADFS send user@corp as preferred_username / upn)."""
    value = claims.get(claim) or claims.get("email") or ""
    if not isinstance(value, str):
        value = ""
    return value.strip().lower().partition("@")[0]


def user_for(claims, config, *, ip=None, user_agent=None):
    """The enabled user the verified claims name, created on first sign-in, with memberships
    following the groups claim (accounts.user_for_identity, as for directory logins).
    Unauthenticated if no usable username, or the name is a local or directory account."""
    username = username_from(claims, config.oidc_username_claim)
    if not accounts.USERNAME_RE.fullmatch(username):
        raise Unauthenticated(f"the sign-in provider sent no usable username in {config.oidc_username_claim}")
    existing = User.get_or_none(User.username == username)
    if existing is not None and existing.auth_source != identity.OIDC:
        raise Unauthenticated(f"{username} is a {existing.auth_source} account: log in with its password")
    email = claims.get("email") if claims.get("email_verified", True) is not False else None
    name = claims.get("name")
    email, full_name = accounts._profile(email if isinstance(email, str) else None,
                                         name if isinstance(name, str) else None)
    person = identity.Identity(username=username, source=identity.OIDC, subject=str(claims["sub"])[:255],
                               email=email, full_name=full_name)
    groups = claims.get(config.oidc_groups_claim)
    groups = [g for g in groups if isinstance(g, str)] if isinstance(groups, list) else []
    ctx = audit.AuditContext(user=existing, ip=ip, user_agent=user_agent, via="sso")
    return accounts.user_for_identity(person, groups, config.oidc_group_roles, actor=ctx)


_providers = {}
_providers_lock = threading.Lock()


def provider_for(config):
    """The Provider of ``config`` (discovery and keys are cached in it), None without SSO."""
    if not config.oidc_issuer:
        return None
    cache_key = (config.oidc_issuer, config.oidc_client_id, config.oidc_client_secret_file, config.oidc_ca_file)
    with _providers_lock:
        if cache_key not in _providers:
            _providers[cache_key] = Provider(config)
        _providers[cache_key].config = config
        return _providers[cache_key]
