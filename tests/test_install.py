"""install.sh as a company admin runs it: a production install from a wheelhouse with no network,
then the installed service serving as its own system user, then a re-run that upgrades in place.

Needs root (it creates a system user), as on a real server; scripts/test.sh runs as root in CI.
The wheelhouse is built by scripts/wheelhouse.sh, which needs PyPI (or pip's cache).
"""

import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import requests

from appliance.protocol import registry, signing
from tests.procserver import free_port

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="install.sh's production mode creates a system user: run as root")


def offline_prefix():
    """`unshare -n` runs a command with no network at all, proving the install is offline."""
    if shutil.which("unshare") and subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0:
        return ["unshare", "-n"]
    return []


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheelhouse")
    done = subprocess.run(["bash", str(REPO / "scripts" / "wheelhouse.sh"), str(out)], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


@pytest.fixture
def server_root():
    """A folder the service user can reach (pytest's own temp folders are private to root)."""
    path = Path(tempfile.mkdtemp(prefix="hexvault-install-"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def service_user():
    name = f"hvt{uuid.uuid4().hex[:8]}"
    yield name
    subprocess.run(["userdel", name], capture_output=True)
    subprocess.run(["groupdel", name], capture_output=True)


def test_offline_production_install_serves_as_its_own_user_and_upgrades_in_place(wheelhouse, service_user,
                                                                                  server_root):
    port = free_port()
    root = server_root
    dirs = {"--prefix": root / "opt", "--data-dir": root / "data", "--config-dir": root / "etc",
            "--unit-dir": root / "units", "--bin-dir": root / "bin"}
    args = [str(wheelhouse / "install.sh"), "--wheelhouse", str(wheelhouse), "--user", service_user,
            "--host", "127.0.0.1", "--port", str(port), "--base-url", f"http://127.0.0.1:{port}", "--no-start"]
    for option, path in dirs.items():
        args += [option, str(path)]
    first = subprocess.run(offline_prefix() + args, capture_output=True, text=True, timeout=600, cwd=root)
    output = first.stdout + first.stderr
    assert first.returncode == 0, output[-3000:]
    assert re.search(r"Admin password:\s+\S{12,}", output)
    repo_key = re.search(r"Repository key:\s+([0-9a-f]{32})", output).group(1)
    assert f"mix hex.repo add acme http://127.0.0.1:{port}/repos/acme --public-key acme.pem" in output

    user = pwd.getpwnam(service_user)
    data, config = dirs["--data-dir"], dirs["--config-dir"] / "hexvault.toml"
    assert data.stat().st_uid == user.pw_uid and stat.S_IMODE(data.stat().st_mode) == 0o750
    assert config.stat().st_uid == 0 and config.stat().st_gid == user.pw_gid
    assert stat.S_IMODE(config.stat().st_mode) == 0o640
    assert not stat.S_IMODE((data / "secret_key").stat().st_mode) & 0o007  # nothing for other users
    unit = (dirs["--unit-dir"] / "hexvault.service").read_text()
    program = dirs["--prefix"] / "venv" / "bin" / "hexvault"
    assert f"ExecStart={program} serve" in unit and f"User={service_user}" in unit
    assert f"Environment=HEXVAULT_CONFIG={config}" in unit and f"ReadWritePaths={data}" in unit

    def serve():
        proc = subprocess.Popen(["runuser", "-u", service_user, "--", "env", f"HEXVAULT_CONFIG={config}", str(program),
                                 "serve"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            try:
                requests.get(f"http://127.0.0.1:{port}/repos/acme/public_key", timeout=1)
                return proc
            except requests.ConnectionError:
                time.sleep(0.1)
        raise AssertionError("the installed server did not start")

    def check_serving():
        public_key = signing.load_public_key(requests.get(f"http://127.0.0.1:{port}/repos/acme/public_key",
                                                          timeout=10).content)
        names = requests.get(f"http://127.0.0.1:{port}/repos/acme/names", headers={"authorization": repo_key},
                             timeout=10)
        assert names.status_code == 200
        payload = registry.decode_signed(names.content, public_key)
        assert registry.decode_names(payload, "acme")["packages"] == []
        assert requests.get(f"http://127.0.0.1:{port}/repos/acme/names", timeout=10).status_code == 401

    def stop(proc):
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        proc.stderr.close()

    proc = serve()
    try:
        check_serving()
        # The admin command runs the CLI as the service user with the installed config, even for
        # root, so what it writes (here, an organization and its registry files) stays the service's.
        admin = dirs["--bin-dir"] / "hexvault"
        created = subprocess.run([str(admin), "org", "create", "beta"], capture_output=True, text=True, timeout=60)
        assert created.returncode == 0 and f"http://127.0.0.1:{port}/repos/beta" in created.stdout, created.stderr
        assert "beta" in subprocess.run([str(admin), "org", "list"], capture_output=True, text=True).stdout
        owners = {p.stat().st_uid for p in data.rglob("*")}
        assert owners == {user.pw_uid}
    finally:
        stop(proc)

    config.write_text(config.read_text() + "\n# a local edit the upgrade must keep\n")
    again = subprocess.run(offline_prefix() + args, capture_output=True, text=True, timeout=600, cwd=root)
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    assert "already initialized; keeping it" in again.stderr
    assert re.search(r"^schema version \d+: up to date$", again.stdout, re.M), again.stdout + again.stderr
    assert {p.stat().st_uid for p in data.rglob("*")} == {user.pw_uid}  # the migration ran as the service user
    assert "Admin password" not in again.stdout + again.stderr
    assert "a local edit the upgrade must keep" in config.read_text()
    proc = serve()
    try:
        check_serving()  # the same keys still work after the upgrade
    finally:
        stop(proc)
