"""A small local CA and a server certificate for the TLS front (`install.sh --tls-self-signed`).

For companies without their own CA: the CA certificate is what clients trust (mix
``HEX_CACERTS_PATH``, rebar3 ``ssl_cacerts_path``, the browser), its SHA-256 fingerprint is
printed so it can be checked out of band. The CA key stays on the server (owner-only) so the
server certificate can be renewed with the same CA; re-running keeps an existing CA.
"""

import datetime
import ipaddress
import os
import typing

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
SERVER_DAYS = 825  # the longest lifetime browsers accept for a server certificate


class TlsFiles(typing.NamedTuple):
    ca_cert: str
    cert: str
    key: str
    ca_fingerprint: str  # SHA-256 of the CA certificate, colon-separated hex (as `openssl x509 -fingerprint`)


def _write(path, data, mode):
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _key_pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def _make_ca(name):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"Hexvault local CA for {name}")])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - datetime.timedelta(minutes=5))
            .not_valid_after(_now() + datetime.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


def _alt_names(hosts):
    names = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def _make_server(ca_key, ca_cert, hosts):
    # RSA, not EC: mix's fixed cipher list has ECDHE-RSA and ECDHE-ECDSA suites, and RSA works
    # with every client version and OpenSSL build in use.
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - datetime.timedelta(minutes=5))
            .not_valid_after(_now() + datetime.timedelta(days=SERVER_DAYS))
            .add_extension(x509.SubjectAlternativeName(_alt_names(hosts)), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return key, cert


def fingerprint(cert):
    return ":".join(f"{b:02X}" for b in cert.fingerprint(hashes.SHA256()))


def ensure(directory, hosts):
    """Make (or keep) the CA in ``directory`` and issue a new server certificate for ``hosts``
    (host names or IP addresses; the first is the common name). Returns the file paths."""
    hosts = [h for h in dict.fromkeys(hosts) if h]
    if not hosts:
        raise ValueError("a server certificate needs at least one host name")
    os.makedirs(directory, mode=0o750, exist_ok=True)
    ca_cert_path, ca_key_path = os.path.join(directory, "ca.pem"), os.path.join(directory, "ca.key")
    if os.path.exists(ca_cert_path) and os.path.exists(ca_key_path):
        with open(ca_key_path, "rb") as fh:
            ca_key = serialization.load_pem_private_key(fh.read(), None)
        with open(ca_cert_path, "rb") as fh:
            ca_cert = x509.load_pem_x509_certificate(fh.read())
    else:
        ca_key, ca_cert = _make_ca(hosts[0])
        _write(ca_key_path, _key_pem(ca_key), 0o600)
        _write(ca_cert_path, ca_cert.public_bytes(serialization.Encoding.PEM), 0o644)
    key, cert = _make_server(ca_key, ca_cert, hosts)
    cert_path, key_path = os.path.join(directory, "server.pem"), os.path.join(directory, "server.key")
    _write(key_path, _key_pem(key), 0o600)
    # The chain, so clients that only trust the CA can build the path.
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM) + ca_cert.public_bytes(serialization.Encoding.PEM),
           0o644)
    return TlsFiles(ca_cert_path, cert_path, key_path, fingerprint(ca_cert))
