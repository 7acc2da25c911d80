"""hex_core, the Erlang library the real Hex clients are built on, as a test client.

Debian's rebar3 is an escript archive that bundles hex_core under the module prefix ``r3_hex_``
(tarball create/unpack, the repository client with signature and origin checks, the HTTP API
client). ``HexCore`` unpacks those beams from the installed /usr/bin/rebar3 into a temp folder
and runs tests/hex_core_client.escript, passing requests and results as Erlang terms.
"""

import io
import os
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

from appliance.protocol import etf

SCRIPT = Path(__file__).with_name("hex_core_client.escript")


def unpack_rebar3_ebin(dest):
    """The folder with rebar3's own beams (r3_hex_* among them), unpacked from the escript."""
    rebar3 = shutil.which("rebar3")
    if rebar3 is None:
        raise RuntimeError("rebar3 is not installed; scripts/test.sh installs Debian's rebar3")
    data = Path(rebar3).read_bytes()
    with zipfile.ZipFile(io.BytesIO(data[data.index(b"PK\x03\x04"):])) as archive:
        beams = [n for n in archive.namelist() if n.endswith(".beam")]  # r3_hex_* need r3_safe_erl_term too
        tarball_module = [n for n in beams if n.endswith("/r3_hex_tarball.beam")]
        if not tarball_module:
            raise RuntimeError(f"{rebar3} bundles no hex_core (r3_hex_*) modules")
        archive.extractall(dest, members=beams)
    return str(Path(dest) / Path(tarball_module[0]).parent)


class HexCore:
    def __init__(self, workdir):
        self.workdir = Path(workdir)
        self.ebin = unpack_rebar3_ebin(self.workdir / "rebar3")

    def _run(self, request):
        with tempfile.TemporaryDirectory(dir=self.workdir) as tmp:
            request_file, response_file = os.path.join(tmp, "request"), os.path.join(tmp, "response")
            with open(request_file, "wb") as fh:
                fh.write(etf.encode(request))
            env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
            done = subprocess.run(["escript", str(SCRIPT), self.ebin, request_file, response_file],
                                  env=env, capture_output=True, text=True, timeout=120)
            if done.returncode != 0 or not os.path.exists(response_file):
                raise RuntimeError(f"hex_core client failed: {done.stdout}{done.stderr}")
            with open(response_file, "rb") as fh:
                result = etf.decode(fh.read(), max_size=64 * 1024 * 1024)
        if isinstance(result, tuple) and result and result[0] == "crash":
            raise RuntimeError(f"hex_core client crashed: {result[2]}")
        return result

    # -- tarballs

    def create(self, metadata, files, out):
        """hex_core's create: writes the tarball to ``out``; ("ok", {checksums}) or its error."""
        return self._run({"op": "create", "metadata": metadata, "files": files, "out": str(out)})

    def unpack(self, path):
        return self._run({"op": "unpack", "path": str(path)})

    # -- repository and API

    def repo(self, call, config, **args):
        return self._run(dict({"op": "repo", "call": call, "config": config}, **args))

    def api(self, call, config, **args):
        return self._run(dict({"op": "api", "call": call, "config": config}, **args))
