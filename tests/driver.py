"""A test driver for a live Hexvault: verbs that speak the real wire protocol over HTTP."""

import requests

from appliance.protocol import etf, registry, signing, tarball
from appliance.models import SigningKey

ETF = "application/vnd.hex+erlang"


def erlang_package(name="hello", version="0.1.0", requirements=(), module_body=None, readme=None, **meta):
    """A valid rebar3-style package tarball for an OTP application ``name``."""
    module_body = module_body or f'greet() -> <<"hello from {name} {version}">>.\n'
    files = {
        f"src/{name}.app.src": (
            f'{{application, {name}, [{{description, "test"}}, {{vsn, "{version}"}}, '
            f"{{registered, []}}, {{applications, [kernel, stdlib]}}, {{env, []}}]}}.\n").encode(),
        f"src/{name}.erl": (f"-module({name}).\n-export([greet/0]).\n" + module_body).encode(),
        "rebar.config": b"{erl_opts, [debug_info]}.\n",
        "README.md": (readme or f"# {name}\n\nA **test** package.\n").encode(),
    }
    metadata = {
        "name": name, "version": version, "app": name, "description": f"{name} test package",
        "licenses": ["Apache-2.0"], "files": sorted(files), "build_tools": ["rebar3"],
        "requirements": list(requirements),
    }
    metadata.update(meta)
    return tarball.create_package(metadata, files)


class Driver:
    def __init__(self, url, runtime, *, org, admin, repo_key, api_key):
        self.url = url
        self.runtime = runtime
        self.org = org
        self.admin = admin
        self.repo_key = repo_key
        self.api_key = api_key
        self.http = requests.Session()

    @property
    def public_key(self):
        return signing.load_public_key(SigningKey.current().public_pem.encode())

    @property
    def public_key_pem(self):
        return SigningKey.current().public_pem

    def api(self, method, path, *, key=None, body=None, data=None, headers=None, accept=ETF):
        """Call /api/PATH like hex_core does: ETF bodies, raw key in authorization."""
        hdrs = {"accept": accept, "user-agent": "hexvault-tests"}
        if key is not False:
            hdrs["authorization"] = key or self.api_key
        if body is not None:
            data = etf.encode(body)
            hdrs["content-type"] = ETF
        elif data is not None:
            hdrs["content-type"] = "application/octet-stream"
        hdrs.update(headers or {})
        response = self.http.request(method, f"{self.url}/api/{path.lstrip('/')}", data=data, headers=hdrs)
        response.term = etf.decode(response.content) if ETF in response.headers.get("content-type", "") else None
        return response

    def publish(self, data, *, org="acme", name=None, replace=False, key=None):
        name = name or tarball.read_package(data).metadata["name"]
        return self.api("POST", f"repos/{org}/packages/{name}/releases?replace={str(replace).lower()}",
                        data=data, key=key)

    def repo(self, path, *, org="acme", key=None, headers=None):
        hdrs = {"user-agent": "hexvault-tests"}
        if key is not False:
            hdrs["authorization"] = key or self.repo_key
        hdrs.update(headers or {})
        return self.http.get(f"{self.url}/repos/{org}/{path}", headers=hdrs)

    def registry_package(self, name, *, org="acme", key=None):
        """GET /packages/NAME, verify the signature and origin, and return the decoded dict."""
        response = self.repo(f"packages/{name}", org=org, key=key)
        response.raise_for_status()
        payload = registry.decode_signed(response.content, self.public_key)
        return registry.decode_package(payload, org, name)

    def registry_versions(self, *, org="acme"):
        response = self.repo("versions", org=org)
        response.raise_for_status()
        return registry.decode_versions(registry.decode_signed(response.content, self.public_key), org)

    def registry_names(self, *, org="acme"):
        response = self.repo("names", org=org)
        response.raise_for_status()
        return registry.decode_names(registry.decode_signed(response.content, self.public_key), org)
