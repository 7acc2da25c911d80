"""A real OpenID Provider for the SSO tests, built from pyop (a certified OP library) on Flask,
served over HTTPS (pyop refuses a plain-HTTP issuer) with a throwaway CA, on 127.0.0.1 in a
thread. Its login form is an HTML page a browser fills in; users and their claims are given."""

import html
import subprocess
import threading
from urllib.parse import urlencode

from Cryptodome.PublicKey import RSA
from flask import Flask, Response, jsonify, redirect, request
from jwkest.jwk import RSAKey
from oic.oic.message import AuthorizationErrorResponse, TokenErrorResponse
from pyop.authz_state import AuthorizationState
from pyop.exceptions import InvalidAuthenticationRequest, OAuthError
from pyop.provider import Provider
from pyop.subject_identifier import HashBasedSubjectIdentifierFactory
from pyop.userinfo import Userinfo
from pyop.util import should_fragment_encode
from werkzeug.serving import make_server


def make_ca(directory):
    """A CA and a certificate for 127.0.0.1 signed by it: (ca.crt, server.crt, server.key)."""
    d = directory
    ext = d / "ext.cnf"
    ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                   "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
    for args in (["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
                  "-subj", "/CN=Test CA", "-addext", "basicConstraints=critical,CA:TRUE",
                  "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
                 ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
                  "-subj", "/CN=localhost"],
                 ["x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                  "-out", "server.crt", "-days", "2", "-extfile", "ext.cnf"]):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)
    return d / "ca.crt", d / "server.crt", d / "server.key"


def make_app(issuer, clients, users):
    app = Flask(__name__)
    key = RSAKey(key=RSA.generate(2048), alg="RS256", kid="test-key")
    config = {"issuer": issuer, "authorization_endpoint": f"{issuer}/authorize", "token_endpoint": f"{issuer}/token",
              "userinfo_endpoint": f"{issuer}/userinfo", "jwks_uri": f"{issuer}/jwks",
              "response_types_supported": ["code"], "subject_types_supported": ["public"],
              "id_token_signing_alg_values_supported": ["RS256"],
              "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
              "code_challenge_methods_supported": ["S256"], "scopes_supported": ["openid", "profile", "email"],
              "grant_types_supported": ["authorization_code"]}
    def public(user):  # read at each token request, so a test may change a user's groups
        return {k: v for k, v in user.items() if k != "password"}

    claims = {u: public(d) for u, d in users.items()}
    state = AuthorizationState(HashBasedSubjectIdentifierFactory("test-salt"), {}, {}, {}, {})
    op = Provider(key, config, state, clients, Userinfo(claims))
    app.seen_authorization_requests = []

    @app.get("/.well-known/openid-configuration")
    def discovery():
        return Response(op.provider_configuration.to_json(), mimetype="application/json")

    @app.get("/jwks")
    def jwks():
        return jsonify(op.jwks)

    @app.route("/authorize", methods=["GET", "POST"])
    def authorize():
        params = {k: v for k, v in request.values.items() if k not in ("username", "password")}
        try:
            authn_req = op.parse_authentication_request(urlencode(params), request.headers)
        except InvalidAuthenticationRequest as exc:
            return str(exc), 400
        if request.method == "GET":
            app.seen_authorization_requests.append(params)
            hidden = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                             for k, v in params.items())
            return (f'<html><head><title>Corp login</title></head><body><form method="post" id="op-login">{hidden}'
                    '<input name="username"><input name="password" type="password">'
                    '<button type="submit">Sign in</button></form></body></html>')
        user = users.get(request.values.get("username", ""))
        if not user or user["password"] != request.values.get("password"):
            err = AuthorizationErrorResponse(error="access_denied", state=authn_req.get("state"))
            return redirect(err.request(authn_req["redirect_uri"], should_fragment_encode(authn_req)))
        resp = op.authorize(authn_req, request.values["username"])
        return redirect(resp.request(authn_req["redirect_uri"], should_fragment_encode(authn_req)))

    @app.post("/token")
    def token():
        try:
            resp = op.handle_token_request(request.get_data().decode(), request.headers,
                                           extra_id_token_claims=lambda user_id, _client: public(users[user_id]))
            return Response(resp.to_json(), mimetype="application/json")
        except OAuthError as exc:
            err = TokenErrorResponse(error=exc.oauth_error, error_description=str(exc))
            return Response(err.to_json(), status=400, mimetype="application/json")

    return app


class OpenIDProvider:
    """``with OpenIDProvider(tmp, clients, users) as op``: op.issuer, op.ca_file, op.app."""

    def __init__(self, directory, clients, users):
        self.ca_file, cert, key = make_ca(directory)
        self._server = make_server("127.0.0.1", 0, None, threaded=True, ssl_context=(str(cert), str(key)))
        self.issuer = f"https://127.0.0.1:{self._server.server_port}"
        self.app = make_app(self.issuer, clients, users)
        self._server.app = self.app
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._thread.join(timeout=10)
