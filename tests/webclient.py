"""A logged-in admin UI session over real HTTP (requests), filling in the CSRF token like a form."""

import re

import requests

TOKEN_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


class WebSession:
    def __init__(self, url):
        self.url = url
        self.http = requests.Session()
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
