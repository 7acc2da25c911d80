"""install.sh as a company admin runs it: a production install from a wheelhouse with no network,
then the installed service serving as its own system user, then a re-run that upgrades in place;
and as a developer runs it: `--dev` in a checkout, whose CLI then finds the port and data
directory that install wrote.

The production tests need root (they create a system user), as on a real server; scripts/test.sh
runs as root in CI. The wheelhouse is built by scripts/wheelhouse.sh, which needs PyPI (or pip's
cache).
"""

import fcntl
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

import psycopg
import pytest
import requests

from appliance import migrations
from appliance.protocol import registry, signing
from tests.pgcluster import PostgresCluster
from tests.procserver import free_port

REPO = Path(__file__).resolve().parent.parent

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="install.sh's production mode creates a system user: run as root")


def offline_prefix():
    """`unshare -n` runs a command with no network at all, proving the install is offline."""
    if shutil.which("unshare") and subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0:
        return ["unshare", "-n"]
    return []


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory, worker_id):
    """Built once per session: pip builds the package inside this checkout (build/), so xdist
    workers building at once break each other's build; the first one builds, the others wait
    for it and share the result (the session's temp root is common to its workers)."""
    root = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        root = root.parent
    out = root / "wheelhouse"
    with open(root / "wheelhouse.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / "wheelhouse.done").exists():
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            done = subprocess.run(["bash", str(REPO / "scripts" / "wheelhouse.sh"), str(out)], capture_output=True,
                                  text=True, timeout=600)
            assert done.returncode == 0, done.stderr[-3000:]
            (root / "wheelhouse.done").touch()
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


@pytest.fixture
def reachable_postgres():
    """A PostgreSQL cluster of its own whose socket the service user can reach: the cluster keeps
    it in a folder only its server user may enter, as a server's /run/postgresql is not."""
    cluster = PostgresCluster().start()
    os.chmod(cluster.dir, 0o755)
    yield cluster
    cluster.stop()


@needs_root
def test_offline_production_install_serves_as_its_own_user_and_upgrades_in_place(wheelhouse, service_user,
                                                                                  server_root):
    port = free_port()
    root = server_root
    dirs = {"--prefix": root / "opt", "--data-dir": root / "data", "--config-dir": root / "etc",
            "--unit-dir": root / "units", "--bin-dir": root / "bin"}
    args = [str(wheelhouse / "install.sh"), "--wheelhouse", str(wheelhouse), "--user", service_user,
            "--host", "127.0.0.1", "--port", str(port), "--base-url", f"http://127.0.0.1:{port}", "--no-start",
            "--admin-email", "ops@corp.example", "--admin-full-name", "Ops Team"]
    for option, path in dirs.items():
        args += [option, str(path)]
    first = subprocess.run(offline_prefix() + args, capture_output=True, text=True, timeout=600, cwd=root)
    output = first.stdout + first.stderr
    assert first.returncode == 0, output[-3000:]
    assert re.search(r"Admin password:\s+\S{12,}", output)
    repo_key = re.search(r"Repository key:\s+([0-9a-f]{32})", output).group(1)
    api_key = re.search(r"API key:\s+([0-9a-f]{32})", output).group(1)
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
        return serve_installed(service_user, config, program, port)

    def check_serving():
        public_key = signing.load_public_key(requests.get(f"http://127.0.0.1:{port}/repos/acme/public_key",
                                                          timeout=10).content)
        names = requests.get(f"http://127.0.0.1:{port}/repos/acme/names", headers={"authorization": repo_key},
                             timeout=10)
        assert names.status_code == 200
        payload = registry.decode_signed(names.content, public_key)
        assert registry.decode_names(payload, "acme")["packages"] == []
        assert requests.get(f"http://127.0.0.1:{port}/repos/acme/names", timeout=10).status_code == 401

    proc = serve()
    try:
        check_serving()
        # What systemd runs after ExecStart: the service user asking the server's /healthz.
        health = re.search(r"^ExecStartPost=(.+)$", unit, re.M).group(1).split()
        assert health == [str(program), "health", "--wait", "60"]
        asked = subprocess.run(["runuser", "-u", service_user, "--", "env", f"HEXVAULT_CONFIG={config}", *health],
                               capture_output=True, text=True, timeout=90)
        assert asked.returncode == 0 and asked.stdout.strip().endswith("/healthz: ok"), asked.stdout + asked.stderr
        # The first admin has the e-mail and name given to install.sh (owner lists and whoami show them).
        me = requests.get(f"http://127.0.0.1:{port}/api/users/me", timeout=10,
                          headers={"authorization": api_key, "accept": "application/json"}).json()
        assert (me["email"], me["full_name"]) == ("ops@corp.example", "Ops Team")
        # The admin command runs the CLI as the service user with the installed config, even for
        # root, so what it writes (here, an organization and its registry files) stays the service's.
        admin = dirs["--bin-dir"] / "hexvault"
        created = subprocess.run([str(admin), "org", "create", "beta"], capture_output=True, text=True, timeout=60)
        assert created.returncode == 0 and f"http://127.0.0.1:{port}/repos/beta" in created.stdout, created.stderr
        assert "beta" in subprocess.run([str(admin), "org", "list"], capture_output=True, text=True).stdout
        owners = {p.stat().st_uid for p in data.rglob("*")}
        assert owners == {user.pw_uid}
    finally:
        stop_installed(proc)

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
        stop_installed(proc)

    # The README's uninstall steps, with this install's folders and user for the defaults,
    # leave nothing of it behind.
    run_uninstall_steps(root, service_user, {"/opt/hexvault": dirs["--prefix"], "/var/lib/hexvault": data,
                                             "/etc/hexvault": dirs["--config-dir"],
                                             "/etc/systemd/system": dirs["--unit-dir"],
                                             "/usr/local/bin": dirs["--bin-dir"], "/etc/nginx": root / "nginx",
                                             "/var/backups/hexvault": root / "backups"})
    # Only the folders standing for system ones (/usr/local/bin, /etc/systemd/system) may stay, empty.
    assert [str(p) for p in root.rglob("*") if not p.is_dir()] == []
    assert not any(folder.exists() for folder in (dirs["--prefix"], data, dirs["--config-dir"]))
    assert subprocess.run(["getent", "passwd", service_user], capture_output=True).returncode != 0
    assert subprocess.run(["getent", "group", service_user], capture_output=True).returncode != 0


def serve_installed(service_user, config, program, port):
    """The installed program as its unit runs it (by hand: no systemd here), once it answers."""
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
    os.killpg(proc.pid, signal.SIGKILL)
    raise AssertionError(f"the server installed with {config} did not start")


def stop_installed(proc):
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)
    proc.stderr.close()


@needs_root
def test_two_nodes_install_on_one_postgresql_database_and_one_shared_data_directory(wheelhouse, service_user,
                                                                                     server_root, reachable_postgres):
    """README "Several nodes": install.sh on every node with the same --database-url and --data-dir.
    Node A initializes both; node B finds them initialized and only migrates and installs its unit
    and admin command (no second admin, the shared app secret and signing key untouched); both
    serve A's keys; re-running A's install upgrades in place; and a node whose config names an
    empty database stops with one error line instead of initializing it."""
    pg = reachable_postgres
    # Trust authentication ignores the password, so the URL can carry one that must never be printed.
    url = pg.create_database().replace("postgresql://postgres@", "postgresql://postgres:pw-s3cret@")
    shown_url = url.replace(":pw-s3cret@", ":***@")
    data = server_root / "data"
    latest = migrations.latest_version()

    def install(node, port):
        root = server_root / node
        args = [str(wheelhouse / "install.sh"), "--wheelhouse", str(wheelhouse), "--user", service_user,
                "--host", "127.0.0.1", "--port", str(port), "--base-url", f"http://127.0.0.1:{port}", "--no-start",
                "--data-dir", str(data), "--database-url", url]
        for option, folder in (("--prefix", "opt"), ("--config-dir", "etc"), ("--unit-dir", "units"),
                               ("--bin-dir", "bin")):
            args += [option, str(root / folder)]
        done = subprocess.run(offline_prefix() + args, capture_output=True, text=True, timeout=600, cwd=server_root)
        assert "pw-s3cret" not in done.stdout + done.stderr
        return done, root / "etc" / "hexvault.toml"

    def program(node):
        return server_root / node / "opt" / "venv" / "bin" / "hexvault"

    port_a, port_b = free_port(), free_port()
    a, config_a = install("node-a", port_a)
    assert a.returncode == 0, (a.stdout + a.stderr)[-3000:]
    assert re.search(r"Admin password:\s+\S{12,}", a.stdout)
    assert f"and the database {shown_url} as {service_user}" in a.stderr
    repo_key = re.search(r"Repository key:\s+([0-9a-f]{32})", a.stdout).group(1)
    api_key = re.search(r"API key:\s+([0-9a-f]{32})", a.stdout).group(1)
    assert f'database_url = "{url}"' in config_a.read_text()
    assert not (data / "hexvault.db").exists()  # the database is PostgreSQL's
    shared = {p: p.read_bytes() for p in [data / "secret_key", *(data / "keys").iterdir()]}

    b, config_b = install("node-b", port_b)
    assert b.returncode == 0, (b.stdout + b.stderr)[-3000:]
    assert f"{data} is already initialized (database {shown_url}); keeping it" in b.stderr
    assert re.search(rf"^schema version {latest}: up to date$", b.stdout, re.M), b.stdout + b.stderr
    assert "Admin password" not in b.stdout + b.stderr and "Repository key" not in b.stdout
    assert {p: p.read_bytes() for p in [data / "secret_key", *(data / "keys").iterdir()]} == shared
    assert f'database_url = "{url}"' in config_b.read_text()
    assert f"ExecStart={program('node-b')} serve" in (server_root / "node-b" / "units" / "hexvault.service").read_text()
    listed = subprocess.run([str(server_root / "node-b" / "bin" / "hexvault"), "org", "list"], capture_output=True,
                            text=True, timeout=60)
    assert listed.returncode == 0 and "acme" in listed.stdout, listed.stderr

    def check_keys(port):
        """The keys node A's init printed work on this node."""
        public_key = signing.load_public_key(requests.get(f"http://127.0.0.1:{port}/repos/acme/public_key",
                                                          timeout=10).content)
        names = requests.get(f"http://127.0.0.1:{port}/repos/acme/names", headers={"authorization": repo_key},
                             timeout=10)
        assert names.status_code == 200
        assert registry.decode_names(registry.decode_signed(names.content, public_key), "acme")["packages"] == []
        me = requests.get(f"http://127.0.0.1:{port}/api/users/me", timeout=10,
                          headers={"authorization": api_key, "accept": "application/json"})
        assert me.status_code == 200 and me.json()["username"] == "admin"

    nodes = [serve_installed(service_user, config_a, program("node-a"), port_a),
             serve_installed(service_user, config_b, program("node-b"), port_b)]
    try:
        check_keys(port_a)
        check_keys(port_b)
    finally:
        for proc in nodes:
            stop_installed(proc)

    again, _ = install("node-a", port_a)
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    assert f"{data} is already initialized (database {shown_url}); keeping it" in again.stderr
    assert re.search(rf"^schema version {latest}: up to date$", again.stdout, re.M), again.stdout + again.stderr
    assert "Admin password" not in again.stdout + again.stderr
    assert {p: p.read_bytes() for p in [data / "secret_key", *(data / "keys").iterdir()]} == shared
    proc = serve_installed(service_user, config_a, program("node-a"), port_a)
    try:
        check_keys(port_a)
    finally:
        stop_installed(proc)

    # Node B's config now names an empty database (a typo, a wrong server): its install refuses in
    # one line, keeps the file's URL over the one given, and creates nothing in that database.
    empty = pg.create_database().replace("postgresql://postgres@", "postgresql://postgres:pw-s3cret@")
    config_b.write_text(config_b.read_text().replace(url, empty))
    wrong, _ = install("node-b", port_b)
    assert wrong.returncode != 0
    shown_empty = empty.replace(":pw-s3cret@", ":***@")
    assert (f"--database-url {shown_url} ignored: {config_b} has database_url = {shown_empty}, which is kept"
            in wrong.stderr)
    assert re.search(rf"^error: database {re.escape(shown_empty)} holds no Hexvault schema, but {data} is initialized;",
                     wrong.stderr, re.M), wrong.stderr[-3000:]
    assert "Traceback" not in wrong.stderr and "Admin password" not in wrong.stdout
    with psycopg.connect(empty.replace(":pw-s3cret@", "@")) as conn:
        assert conn.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
                            ).fetchone() == (0,)
    assert {p: p.read_bytes() for p in [data / "secret_key", *(data / "keys").iterdir()]} == shared


def run_uninstall_steps(root, user, folders):
    """Run the README's "Uninstalling" block with ``folders`` for its default paths and ``user``
    for the service user; systemctl lines are left out (no systemd here: the unit files they
    stop are removed by the rm lines all the same)."""
    from tests import readme_commands

    text = readme_commands.README.read_text()
    section = text[text.index("\n### Uninstalling\n"):]
    section = section[:section.index("\n#", 1)]
    steps = [line for line in readme_commands.sh_lines(section) if not line.startswith("sudo systemctl")]
    assert any("rm -rf /var/lib/hexvault" in line for line in steps), steps
    for line in steps:
        for default, here in sorted(folders.items(), key=lambda item: -len(item[0])):
            line = line.replace(default, str(here))
        line = re.sub(r"\bsudo ", "", re.sub(r"(userdel|groupdel|group) hexvault\b", rf"\1 {user}", line))
        outside = [word for word in line.split() if word.startswith("/") and not word.startswith(str(root))]
        assert not outside, f"uninstall step {line!r} would touch {outside} outside the test's folders"
        subprocess.run(["bash", "-c", line], check=False, timeout=60)


@needs_root
def test_tls_self_signed_install_puts_nginx_in_front(wheelhouse, service_user, server_root):
    """--tls-self-signed: a local CA, an nginx site, Hexvault on 127.0.0.1 behind it, nginx's
    workers reading blobs but nothing else, and a re-run that renews the certificate."""
    import ssl

    from appliance import front
    from tests.driver import erlang_package
    from tests.nginxfront import NGINX

    if NGINX is None:
        pytest.skip("nginx is not installed (scripts/test.sh installs it)")
    port, https_port, http_port = free_port(), free_port(), free_port()
    root = server_root
    base = f"https://localhost:{https_port}"
    dirs = {"--prefix": root / "opt", "--data-dir": root / "data", "--config-dir": root / "etc",
            "--unit-dir": root / "units", "--bin-dir": root / "bin", "--nginx-dir": root / "nginx"}
    args = [str(wheelhouse / "install.sh"), "--wheelhouse", str(wheelhouse), "--user", service_user,
            "--port", str(port), "--base-url", base, "--no-start", "--tls-self-signed",
            "--https-port", str(https_port), "--http-port", str(http_port), "--nginx-user", "www-data"]
    for option, path in dirs.items():
        args += [option, str(path)]
    first = subprocess.run(offline_prefix() + args, capture_output=True, text=True, timeout=600, cwd=root)
    output = first.stdout + first.stderr
    assert first.returncode == 0, output[-3000:]
    api_key = re.search(r"API key:\s+([0-9a-f]{32})", output).group(1)
    repo_key = re.search(r"Repository key:\s+([0-9a-f]{32})", output).group(1)
    tls = dirs["--config-dir"] / "tls"
    from cryptography import x509

    from appliance.front.selfsigned import fingerprint

    printed = re.search(r"CA SHA-256:\s+([0-9A-F:]{95})", output).group(1)
    assert printed == fingerprint(x509.load_pem_x509_certificate((tls / "ca.pem").read_bytes()))
    assert str(tls / "ca.pem") in output
    assert f"mix hex.repo add acme {base}/repos/acme" in output and "hexvault-ca.pem" in output
    config = (dirs["--config-dir"] / "hexvault.toml").read_text()
    for line in (f'base_url = "{base}"', 'host = "127.0.0.1"', "secure_cookies = true", "trusted_proxy = true",
                 f'tls_ca_file = "{tls / "ca.pem"}"'):
        assert line in config
    assert stat.S_IMODE((tls / "server.key").stat().st_mode) == 0o600 and (tls / "server.key").stat().st_uid == 0
    site = dirs["--nginx-dir"] / "sites-available" / "hexvault"
    assert (dirs["--nginx-dir"] / "sites-enabled" / "hexvault").resolve() == site.resolve()

    data, program = dirs["--data-dir"], dirs["--prefix"] / "venv" / "bin" / "hexvault"
    proc = subprocess.Popen(["runuser", "-u", service_user, "--", "env", f"HEXVAULT_CONFIG={dirs['--config-dir'] / 'hexvault.toml'}",
                             str(program), "serve"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    # Debian's nginx runs its master as root (it reads the root-only key) and workers as www-data.
    conf = front.write_standalone(root / "nginx-run", site.read_text(), user="www-data")
    nginx = subprocess.Popen([NGINX, "-c", conf, "-p", str(root / "nginx-run"), "-e", "stderr"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    http = requests.Session()
    http.verify, http.trust_env = str(tls / "ca.pem"), False
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert nginx.poll() is None, nginx.stderr.read().decode()[-2000:]
            try:
                if http.get(f"{base}/repos/acme/public_key", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "the front or the server did not start"
            time.sleep(0.1)
        public_key = signing.load_public_key(http.get(f"{base}/repos/acme/public_key").content)
        names = http.get(f"{base}/repos/acme/names", headers={"authorization": repo_key})
        assert registry.decode_names(registry.decode_signed(names.content, public_key), "acme")["packages"] == []
        data_bytes = erlang_package("hello", "1.0.0")
        published = http.post(f"{base}/api/repos/acme/publish?replace=false", data=data_bytes,
                              headers={"authorization": api_key, "content-type": "application/octet-stream",
                                       "accept": "application/json"})
        assert published.status_code == 201, published.text
        # nginx's worker (www-data) streams the tarball from the data directory ...
        tarball = http.get(f"{base}/repos/acme/tarballs/hello-1.0.0.tar", headers={"authorization": repo_key})
        assert tarball.status_code == 200 and tarball.content == data_bytes
        # ... and can read nothing else of it.
        assert subprocess.run(["runuser", "-u", "www-data", "--", "cat", str(data / "hexvault.db")],
                              capture_output=True).returncode != 0
        assert requests.get(f"http://localhost:{http_port}/api/users/me", allow_redirects=False).status_code == 403

        def served_serial():
            context = ssl.create_default_context(cafile=str(tls / "ca.pem"))
            with context.wrap_socket(__import__("socket").create_connection(("127.0.0.1", https_port)),
                                     server_hostname="localhost") as conn:
                return conn.getpeercert()["serialNumber"]

        ca_before, serial_before = (tls / "ca.pem").read_bytes(), served_serial()
        again = subprocess.run(offline_prefix() + args, capture_output=True, text=True, timeout=600, cwd=root)
        assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
        assert (tls / "ca.pem").read_bytes() == ca_before  # the CA clients trust is kept
        front.write_standalone(root / "nginx-run", site.read_text(), user="www-data")
        nginx.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 15
        while served_serial() == serial_before:
            assert time.monotonic() < deadline, "nginx still serves the old certificate"
            time.sleep(0.1)
        assert http.get(f"{base}/repos/acme/tarballs/hello-1.0.0.tar",
                        headers={"authorization": repo_key}).content == data_bytes
    finally:
        nginx.send_signal(signal.SIGQUIT)
        nginx.wait(timeout=30)
        nginx.stderr.close()
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        proc.stderr.close()


def test_a_dev_checkout_remembers_its_port_and_data_directory(wheelhouse, tmp_path):
    """`install.sh --dev --port P --data-dir D` writes hexvault.toml into the checkout: the CLI run
    there (or below it) with no HEXVAULT_* variable prints client commands with port P, `serve`
    serves D on P, and a re-run without the options keeps both."""
    checkout = tmp_path / "checkout"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        if (REPO / name).is_file():
            (checkout / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, checkout / name)
    port, data = free_port(), tmp_path / "dev-data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEXVAULT_")}

    def install(*options):
        done = subprocess.run(["bash", str(checkout / "install.sh"), "--dev", "--no-serve", "--wheelhouse", str(wheelhouse),
                               *options], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
        return done

    first = install("--port", str(port), "--data-dir", str(data))
    assert f"mix hex.repo add acme http://127.0.0.1:{port}/repos/acme" in first.stdout
    assert f"cd {checkout} && .venv/bin/hexvault serve" in first.stderr
    hexvault = checkout / ".venv" / "bin" / "hexvault"
    for cwd in (checkout, checkout / "docs"):
        setup = subprocess.run([str(hexvault), "org", "client-setup", "acme"], cwd=cwd, env=env, capture_output=True,
                               text=True, timeout=60)
        assert setup.returncode == 0, setup.stderr
        assert f"mix hex.repo add acme http://127.0.0.1:{port}/repos/acme" in setup.stdout
        assert ":8000" not in setup.stdout

    server = subprocess.Popen([str(hexvault), "serve"], cwd=checkout, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.stderr.read().decode()[-2000:]
            try:
                if requests.get(f"http://127.0.0.1:{port}/repos/acme/public_key", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, f"the checkout's server does not answer on port {port}"
            time.sleep(0.1)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        server.stderr.close()

    again = install()
    assert f"{data} is already initialized; keeping it" in again.stderr
    shown = subprocess.run([str(hexvault), "show-config"], cwd=checkout, env=env, capture_output=True, text=True,
                           timeout=60).stdout
    assert f"# config file: {checkout / 'hexvault.toml'}" in shown
    assert f"port = {port}" in shown and f"data_dir = '{data}'" in shown
    # The file holds this machine's paths: git must never offer to commit it.
    assert subprocess.run(["git", "check-ignore", "-q", "hexvault.toml"], cwd=REPO).returncode == 0
