"""Registry v2 messages byte by byte: field numbers, packing, signatures, origin checks."""

import gzip
import hashlib
import shutil
import subprocess

import pytest

from appliance.protocol import registry, signing

KEY = signing.generate_private_key()
RELEASE = dict(version="1.0.0", inner_checksum=b"\x11" * 32, outer_checksum=b"\x22" * 32, retired=None,
               published_at=None, dependencies=[dict(package="dep", requirement="~> 1.0", optional=True,
                                                      app="dep_app", repository="hexpm")])


def test_package_field_numbers_on_the_wire():
    payload = registry.encode_package("acme", "foo", [dict(RELEASE, retired={"reason": "security",
                                                                                "message": "CVE"})])
    release = registry.Package.FromString(payload).releases[0].SerializeToString()
    assert b"\x12\x20" + b"\x11" * 32 in release  # inner_checksum: field 2, bytes
    assert b"\x2a\x20" + b"\x22" * 32 in release  # outer_checksum: field 5, bytes
    assert b"\x22\x07\x08\x02\x12\x03CVE" in release  # retired: field 4 {reason=2 (security), message}
    assert payload.endswith(b"\x12\x03foo\x1a\x04acme")  # name = field 2, repository = field 3


def test_versions_retired_indexes_are_packed():
    payload = registry.encode_versions("acme", [{"name": "foo", "versions": ["1.0.0", "1.1.0"], "retired": [1]}])
    assert b"\x1a\x01\x01" in payload  # field 3, length-delimited (packed), one varint: 1
    assert registry.decode_versions(payload, "acme")["packages"] == [
        {"name": "foo", "versions": ["1.0.0", "1.1.0"], "retired": [1]}]


def test_signed_gzip_verifies_with_the_public_key_and_refuses_tampering():
    payload = registry.encode_names("acme", [("foo", None)])
    data = registry.sign_and_gzip(payload, KEY)
    assert data[:2] == b"\x1f\x8b"
    assert registry.decode_signed(data, KEY.public_key()) == payload
    signed = registry.Signed.FromString(gzip.decompress(data))
    tampered = registry.Signed(payload=payload.replace(b"foo", b"bar"), signature=signed.signature)
    with pytest.raises(registry.SignatureError):
        registry.decode_signed(gzip.compress(tampered.SerializeToString()), KEY.public_key())
    with pytest.raises(registry.SignatureError):
        registry.decode_signed(data, signing.generate_private_key().public_key())


def test_origin_check_like_hex_core():
    payload = registry.encode_package("acme", "foo", [RELEASE])
    assert registry.decode_package(payload, "acme", "foo")["releases"][0]["dependencies"][0] == {
        "package": "dep", "requirement": "~> 1.0", "optional": True, "app": "dep_app", "repository": "hexpm"}
    with pytest.raises(registry.RegistryError, match="bad_repo_name"):
        registry.decode_package(payload, "other", "foo")
    with pytest.raises(registry.RegistryError, match="bad_repo_name"):
        registry.decode_package(payload, "acme", "bar")


def test_fingerprint_matches_ssh_keygen(tmp_path):
    if shutil.which("ssh-keygen") is None:
        pytest.skip("ssh-keygen is not installed")
    pem = tmp_path / "key.pem"
    pem.write_bytes(signing.public_key_pem(KEY))
    ssh = subprocess.run(["ssh-keygen", "-i", "-m", "PKCS8", "-f", str(pem)], capture_output=True, text=True)
    (tmp_path / "key.pub").write_text(ssh.stdout)
    listed = subprocess.run(["ssh-keygen", "-lf", str(tmp_path / "key.pub")], capture_output=True, text=True).stdout
    assert listed.split()[1] == signing.fingerprint(KEY.public_key())


@pytest.mark.skipif(shutil.which("erl") is None, reason="erlang is not installed")
def test_erlang_public_key_verifies_our_signature(tmp_path):
    payload = registry.encode_package("acme", "foo", [RELEASE])
    signature = signing.sign(KEY, payload)
    (tmp_path / "pub.pem").write_bytes(signing.public_key_pem(KEY))
    expr = (f'{{ok, Pem}} = file:read_file("{tmp_path / "pub.pem"}"), [E] = public_key:pem_decode(Pem), '
            f'Key = public_key:pem_entry_decode(E), '
            f'P = binary:decode_hex(<<"{payload.hex()}">>), S = binary:decode_hex(<<"{signature.hex()}">>), '
            f'io:format("~p", [public_key:verify(P, sha512, S, Key)]), halt().')
    out = subprocess.run(["erl", "-noshell", "-eval", expr], capture_output=True, text=True, timeout=60)
    assert out.stdout == "true", out.stdout + out.stderr


def test_checksums_are_raw_sha256_bytes():
    data = b"tarball bytes"
    payload = registry.encode_package("acme", "foo", [dict(RELEASE, outer_checksum=hashlib.sha256(data).digest())])
    assert registry.decode_package(payload, "acme", "foo")["releases"][0]["outer_checksum"] == \
        hashlib.sha256(data).digest()
