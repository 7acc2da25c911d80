"""Private documentation: files read out of stored docs tarballs (gzipped tar), safely.

A docs tarball was validated when uploaded (protocol.tarball.read_docs). Reading one file
streams the archive and stops at that member; paths are normalised and must stay inside.
"""

import mimetypes
import posixpath
import tarfile

from appliance import packages
from appliance.errors import NotFound

MAX_FILE = 32 * 1024 * 1024


def _normalize(path):
    path = posixpath.normpath("/" + (path or "")).lstrip("/")
    if path in ("", "."):
        return "index.html"
    return path


def read_file(rt, org, name, version, path):
    """(bytes, content type) of one file of a release's docs, or NotFound."""
    release = packages.get_release(org, name, version)
    if not release.docs_checksum:
        raise NotFound("no docs for this release")
    wanted = _normalize(path)
    with rt.store.open(packages.docs_key(release.docs_checksum)) as fh:
        try:
            with tarfile.open(fileobj=fh, mode="r|gz") as tar:
                for member in tar:
                    if _normalize(member.name) == wanted and member.isfile() and member.size <= MAX_FILE:
                        data = tar.extractfile(member).read()
                        ctype = mimetypes.guess_type(wanted)[0] or "application/octet-stream"
                        if ctype.startswith("text/") or ctype in ("application/javascript", "application/json"):
                            ctype += "; charset=utf-8"
                        return data, ctype
        except (tarfile.TarError, OSError, EOFError):
            raise NotFound("docs archive is unreadable") from None
    if "." not in wanted.rsplit("/", 1)[-1]:
        return read_file(rt, org, name, version, wanted + "/index.html")  # a directory URL
    raise NotFound("no such file in the docs")


def latest_with_docs(org, name):
    package = packages.get_package(org, name)
    for release in packages.releases_of(package):
        if release.has_docs:
            return release.version
    raise NotFound("no release of this package has docs")
