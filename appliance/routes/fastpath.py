"""A WSGI fast path for repository GETs, in front of Flask.

Registry and tarball GETs are nearly all of an appliance's traffic, and Flask's per-request
machinery (contexts, session, routing, Response objects) costs more than the work itself. This
layer answers ``GET|HEAD [/mirror/hexpm]/repos/ORG/(names|versions|packages/N|tarballs/F)`` and
the hex.pm mirror's ``/mirror/hexpm/(names|versions|packages/N|tarballs/F)`` with the same
decision functions as the Flask views (repository.find_file, mirror.find_mirror_file) and the
same error bodies; anything else, and any unexpected failure, falls through to Flask.
"""

import logging
import re

from appliance import front
from appliance.db import database
from appliance.errors import HexvaultError
from appliance.ops.edge import ERROR_KEY
from appliance.routes.keyauth import principal_for
from appliance.routes.mirror import find_mirror_file
from appliance.routes.repository import accel_redirect, find_file, not_modified
from storage import BlobNotFound

FAST_RE = re.compile(r"(?:/mirror/hexpm)?/repos/([a-z0-9_]+)/((?:names|versions)|(?:packages|tarballs)/[^/]+)")
MIRROR_RE = re.compile(r"/mirror/hexpm/((?:names|versions)|(?:packages|tarballs)/[^/]+)")
SMALL_FILE = 256 * 1024
log = logging.getLogger("hexvault")


class RepositoryFastPath:
    def __init__(self, app, runtime):
        self.app = app
        self.runtime = runtime

    def _principal(self, environ):
        # REMOTE_ADDR is the client's address, set by waitress from a trusted proxy's header if any.
        return principal_for(self.runtime, environ.get("HTTP_AUTHORIZATION"), environ.get("REMOTE_ADDR"),
                             environ.get("HTTP_USER_AGENT"))

    def __call__(self, environ, start_response):
        method = environ.get("REQUEST_METHOD")
        if method not in ("GET", "HEAD"):
            return self.app(environ, start_response)
        path = environ.get("PATH_INFO", "")
        repository, mirrored = FAST_RE.fullmatch(path), None
        if repository is None:
            mirrored = MIRROR_RE.fullmatch(path)
            if mirrored is None:
                return self.app(environ, start_response)
        try:
            database.connect(reuse_if_open=True)
            if repository is not None:
                blob, cache_control = find_file(self.runtime, self._principal(environ), repository.group(1),
                                                repository.group(2))
            else:
                blob, cache_control = find_mirror_file(self.runtime, lambda: self._principal(environ),
                                                       mirrored.group(1))
        except HexvaultError as exc:
            environ[ERROR_KEY] = exc  # for the request observer's failure counts
            headers = [("Content-Type", "text/plain; charset=utf-8")]
            if exc.status == 401:
                headers.append(("WWW-Authenticate", 'Basic realm="hex"'))
            if exc.retry_after:
                headers.append(("Retry-After", str(exc.retry_after)))
            body = (exc.message + "\n").encode()
            headers.append(("Content-Length", str(len(body))))
            start_response(f"{exc.status} {_REASONS.get(exc.status, 'Error')}", headers)
            return [body]
        except Exception:  # let Flask's handlers log and answer it
            log.debug("fast path fell through", exc_info=True)
            return self.app(environ, start_response)
        headers = [("ETag", blob.etag), ("Cache-Control", cache_control)]
        if not_modified(environ.get("HTTP_IF_NONE_MATCH"), blob.etag):
            blob.release()
            start_response("304 Not Modified", headers)
            return []
        target = accel_redirect(environ.get(front.ACCEL_REQUEST_ENVIRON), blob)
        if target:
            blob.release()
            start_response("200 OK", headers + [("X-Accel-Redirect", target), ("Content-Type", "application/octet-stream"),
                                                ("Content-Length", "0")])
            return []
        try:
            fh = blob.open()
        except BlobNotFound:
            body = b"Page not found\n"
            start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8"),
                                             ("Content-Length", str(len(body)))])
            return [body]
        headers += [("Content-Type", "application/octet-stream"), ("Content-Length", str(blob.size))]
        start_response("200 OK", headers)
        if method == "HEAD":
            fh.close()
            return []
        if blob.size <= SMALL_FILE:
            # Most registry files and tarballs are small: one read beats waitress's file buffer.
            with fh:
                return [fh.read()]
        wrapper = environ.get("wsgi.file_wrapper")
        return wrapper(fh, 65536) if wrapper else iter(lambda: fh.read(65536), b"")


_REASONS = {401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 422: "Unprocessable Entity",
            429: "Too Many Requests", 503: "Service Unavailable", 507: "Insufficient Storage"}
