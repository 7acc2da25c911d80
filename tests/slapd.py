"""Debian's real OpenLDAP slapd for the directory-login tests: started as nobody (when the tests
run as root) on a free 127.0.0.1 port in a temp dir, with StartTLS from a test CA, loaded from
LDIF with slapadd, stopped by PID. /work/shared/test-services.md §2 is the recipe."""

import os
import shutil
import subprocess
import time

from tests.nginxfront import AS_ROOT, free_port, make_tls, service_ids, world_dir
from tests.procserver import stop_process

SLAPD = shutil.which("slapd") or ("/usr/sbin/slapd" if os.path.exists("/usr/sbin/slapd") else None)
SLAPADD = shutil.which("slapadd") or ("/usr/sbin/slapadd" if os.path.exists("/usr/sbin/slapadd") else None)
SLAPPASSWD = shutil.which("slappasswd") or ("/usr/sbin/slappasswd" if os.path.exists("/usr/sbin/slappasswd") else None)
MISSING = None if SLAPD and SLAPADD and SLAPPASSWD else "slapd not installed (apt-get install slapd ldap-utils)"

SUFFIX = "dc=example,dc=org"
SERVICE_DN = f"cn=hexvault,ou=services,{SUFFIX}"
SERVICE_PASSWORD = "service-secret-pw"
ROOT_DN = f"cn=admin,{SUFFIX}"
ROOT_PASSWORD = "root-secret-pw"
PASSWORDS = {"alice": "alice-password", "bob": "bob-password", "carol": "carol-password",
             "dave": "dave-password"}

CONF = """\
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/nis.schema
include /etc/ldap/schema/inetorgperson.schema
pidfile  {d}/slapd.pid
argsfile {d}/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
TLSCACertificateFile  {ca}
TLSCertificateFile    {cert}
TLSCertificateKeyFile {key}
# Binds and searches only over TLS (StartTLS), as a company directory would insist.
security tls=1
database mdb
maxsize 10485760
suffix "{suffix}"
rootdn "cn=admin,{suffix}"
rootpw {rootpw}
directory {d}/db
index objectClass eq
access to attrs=userPassword by self write by anonymous auth by * none
access to * by users read by anonymous auth
"""


def _person(uid, name, mail, password_hash):
    return (f"dn: uid={uid},ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {name}\n"
            f"sn: {name.split()[-1]}\ndisplayName: {name}\nmail: {mail}\nuserPassword: {password_hash}\n")


def _group(cn, members):
    return (f"dn: cn={cn},ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: {cn}\n"
            + "".join(f"member: {m}\n" for m in members))


def people_dn(uid):
    return f"uid={uid},ou=people,{SUFFIX}"


def group_dn(cn):
    return f"cn={cn},ou=groups,{SUFFIX}"


class Slapd:
    """alice: elixir-devs (-> acme:write); bob: elixir-admins and elixir-devs; carol: only in
    "others" (mapped to nothing); dave: elixir-devs. The service account may search."""

    def __init__(self):
        self.dir = world_dir("hvslapd")
        self.port = free_port()
        self.url = f"ldap://127.0.0.1:{self.port}"
        self.tls = None
        self.proc = None

    def _hash(self, password):
        return subprocess.run([SLAPPASSWD, "-s", password], check=True, capture_output=True, text=True).stdout.strip()

    def ldif(self):
        entries = [f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n"]
        for ou in ("people", "groups", "services"):
            entries.append(f"dn: ou={ou},{SUFFIX}\nobjectClass: organizationalUnit\nou: {ou}\n")
        entries.append(f"dn: {SERVICE_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n"
                       f"cn: hexvault\nuserPassword: {self._hash(SERVICE_PASSWORD)}\n")
        for uid, password in PASSWORDS.items():
            entries.append(_person(uid, f"{uid.title()} Example", f"{uid}@example.org", self._hash(password)))
        entries.append(_group("elixir-devs", [people_dn("alice"), people_dn("bob"), people_dn("dave")]))
        entries.append(_group("elixir-admins", [people_dn("bob")]))
        entries.append(_group("others", [people_dn("carol")]))
        return "\n".join(entries)

    def _as_service(self, args, **kw):
        uid, gid = service_ids()
        if AS_ROOT:
            kw.update(user=uid, group=gid, extra_groups=[])
        return kw

    def start(self, deadline=20.0):
        d = self.dir
        self.tls = make_tls(d / "tls", hosts=("localhost", "127.0.0.1"))
        (d / "db").mkdir()
        (d / "slapd.conf").write_text(CONF.format(d=d, ca=self.tls.ca_cert, cert=self.tls.cert, key=self.tls.key,
                                                  suffix=SUFFIX, rootpw=self._hash(ROOT_PASSWORD)))
        (d / "data.ldif").write_text(self.ldif())
        uid, gid = service_ids()
        for root, dirs, files in os.walk(d):
            for name in [root] + [os.path.join(root, f) for f in files]:
                os.chown(name, uid, gid)
        subprocess.run([SLAPADD, "-q", "-f", str(d / "slapd.conf"), "-l", str(d / "data.ldif")],
                       check=True, capture_output=True, **self._as_service(None))
        self.proc = subprocess.Popen([SLAPD, "-f", str(d / "slapd.conf"), "-h", self.url + "/", "-d", "0"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **self._as_service(None))
        # Ready means what the tests need: StartTLS and a bind answer. An open port alone is not
        # enough on a loaded machine (a StartTLS right after it was refused with operationsError).
        stop_at = time.monotonic() + deadline
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"slapd exited: {self.proc.stderr.read().decode(errors='replace')[-2000:]}")
            try:
                self.admin().unbind()
                return self
            except Exception as exc:  # not listening yet, or TLS not answering yet
                if time.monotonic() > stop_at:
                    raise RuntimeError(f"slapd did not answer StartTLS and a bind: {exc}") from None
                time.sleep(0.05)

    def stop(self):
        stop_process(self.proc)
        if self.proc is not None:
            self.proc.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def admin(self):
        """An ldap3 connection bound as the directory's root over StartTLS, to change entries."""
        import ssl

        import ldap3
        from ldap3.core.exceptions import LDAPStartTLSError

        tls = ldap3.Tls(ca_certs_file=str(self.tls.ca_cert), validate=ssl.CERT_REQUIRED)
        server = ldap3.Server("127.0.0.1", port=self.port, tls=tls, get_info=ldap3.NONE)
        for attempt in range(3):
            conn = ldap3.Connection(server, ROOT_DN, ROOT_PASSWORD)
            try:
                conn.open()
                conn.start_tls()
                assert conn.bind(), conn.result
                return conn
            except LDAPStartTLSError:
                # slapd on a loaded machine now and then refuses a connection's first StartTLS
                # with operationsError ("operations outstanding"); a new connection is accepted.
                conn.unbind()
                if attempt == 2:
                    raise
            except BaseException:
                conn.unbind()  # closes the socket of a connection that got nowhere
                raise

    def set_members(self, cn, members):
        import ldap3

        conn = self.admin()
        assert conn.modify(group_dn(cn), {"member": [(ldap3.MODIFY_REPLACE, members)]}), conn.result
        conn.unbind()

    def delete(self, dn):
        conn = self.admin()
        assert conn.delete(dn), conn.result
        conn.unbind()

    def settings(self, password_file, **extra):
        """The ldap_* settings of a Hexvault using this directory."""
        values = dict(ldap_urls=[self.url], ldap_ca_file=str(self.tls.ca_cert), ldap_bind_dn=SERVICE_DN,
                      ldap_bind_password_file=str(password_file), ldap_base_dn=f"ou=people,{SUFFIX}",
                      ldap_group_base_dn=f"ou=groups,{SUFFIX}",
                      ldap_group_roles={group_dn("elixir-devs"): "acme:write",
                                        group_dn("elixir-admins"): ["acme:admin", "tools:read"]})
        values.update(extra)
        return values
