"""A tiny stand-in for repo.hex.pm on 127.0.0.1: a stdlib HTTP server in a thread serving signed
records, names, versions and tarballs made with a TEST key, laid out as repo.hex.pm lays them out."""

import datetime
import functools
import hashlib
import http.server
import threading

from appliance.protocol import registry, signing, tarball, versions
from tests.driver import erlang_package


class FakeHexpm:
    def __init__(self, root, packages):
        """packages: {name: [(version, [(dep, requirement)])]}"""
        self.root = root
        self.key = signing.generate_private_key()
        self.public_pem = signing.public_key_pem(self.key)
        self.releases = {}
        (root / "packages").mkdir(parents=True)
        (root / "tarballs").mkdir()
        (root / "public_key").write_bytes(self.public_pem)
        for name, releases in packages.items():
            for version, deps in releases:
                self.publish(name, version, deps)
        handler = functools.partial(_Quiet, directory=str(root))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def publish(self, name, version, deps=()):
        """Add a release and re-sign its package record, names and versions, as hex.pm would."""
        data = erlang_package(name, version, requirements=[
            {"name": d, "app": d, "requirement": req, "optional": False} for d, req in deps])
        (self.root / "tarballs" / f"{name}-{version}.tar").write_bytes(data)
        self.releases.setdefault(name, []).append(dict(
            version=version, inner_checksum=tarball.read_package(data).inner_checksum,
            outer_checksum=hashlib.sha256(data).digest(), retired=None,
            published_at=datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc),
            dependencies=[dict(package=d, requirement=req, optional=False, app=None, repository=None)
                          for d, req in deps]))
        self.releases[name].sort(key=lambda r: versions.parse_version(r["version"]))
        payload = registry.encode_package("hexpm", name, self.releases[name])
        (self.root / "packages" / name).write_bytes(registry.sign_and_gzip(payload, self.key))
        names = registry.encode_names("hexpm", [(n, None) for n in self.releases])
        versions_payload = registry.encode_versions("hexpm", [
            {"name": n, "versions": [r["version"] for r in rels]} for n, rels in self.releases.items()])
        (self.root / "names").write_bytes(registry.sign_and_gzip(names, self.key))
        (self.root / "versions").write_bytes(registry.sign_and_gzip(versions_payload, self.key))

    def file(self, path):
        return (self.root / path).read_bytes()

    def release(self, name, version):
        return next(r for r in self.releases[name] if r["version"] == version)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass
