"""A tiny stand-in for repo.hex.pm on 127.0.0.1: signed records and tarballs made with a test key."""

import functools
import hashlib
import http.server
import threading

from appliance.protocol import registry, signing, tarball
from tests.driver import erlang_package


class FakeHexpm:
    def __init__(self, root, packages):
        """packages: {name: [(version, [(dep, requirement)])]}"""
        self.root = root
        self.key = signing.generate_private_key()
        self.public_pem = signing.public_key_pem(self.key)
        (root / "packages").mkdir(parents=True)
        (root / "tarballs").mkdir()
        (root / "public_key").write_bytes(self.public_pem)
        for name, releases in packages.items():
            encoded = []
            for version, deps in releases:
                data = erlang_package(name, version, requirements=[
                    {"name": d, "app": d, "requirement": req, "optional": False} for d, req in deps])
                (root / "tarballs" / f"{name}-{version}.tar").write_bytes(data)
                encoded.append(dict(version=version, inner_checksum=tarball.read_package(data).inner_checksum,
                                    outer_checksum=hashlib.sha256(data).digest(), retired=None, published_at=None,
                                    dependencies=[dict(package=d, requirement=req, optional=False, app=None,
                                                       repository=None) for d, req in deps]))
            payload = registry.encode_package("hexpm", name, encoded)
            (root / "packages" / name).write_bytes(registry.sign_and_gzip(payload, self.key))
        handler = functools.partial(_Quiet, directory=str(root))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass
