"""A logged-in admin UI session over real HTTP (requests), filling in the CSRF token like a form."""

import re

import requests
from requests.adapters import HTTPAdapter

TOKEN_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


class _FromAddress(HTTPAdapter):
    def __init__(self, address):
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


def http_from(address):
    """A requests.Session whose connections come from ``address`` (any of 127.0.0.0/8 works on
    loopback), so tests can be several clients with addresses of their own."""
    http = requests.Session()
    http.mount("http://", _FromAddress(address))
    return http


class WebSession:
    def __init__(self, url, address=None):
        self.url = url
        self.http = http_from(address) if address else requests.Session()
        self.token = None

    def get(self, path, **kw):
        response = self.http.get(self.url + path, **kw)
        match = TOKEN_RE.search(response.text)
        if match:
            self.token = match.group(1)
        return response

    def post(self, path, data=None, csrf=True, **kw):
        data = dict(data or {})
        if csrf:
            if self.token is None:
                self.get("/admin/login")
            data["csrf_token"] = self.token
        response = self.http.post(self.url + path, data=data, **kw)
        match = TOKEN_RE.search(response.text)
        if match:
            self.token = match.group(1)
        return response

    def login(self, username="admin", password="admin-password"):
        self.get("/admin/login")
        return self.post("/admin/login", {"username": username, "password": password})
