"""RSA keys, PKCS#1 v1.5 / SHA-512 signatures and OpenSSH fingerprints, cross-checked against
cryptography used directly, ssh-keygen and a real Erlang VM when they are installed."""

import base64
import hashlib
import shutil
import subprocess

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from appliance.protocol import hexpm, signing

KEY = signing.generate_private_key()
PAYLOAD = b"\x0a\x03foo\x12\x04acme"

needs_erl = pytest.mark.skipif(shutil.which("erl") is None, reason="Erlang (erl) is not installed")


def _erl(expr):
    result = subprocess.run(["erl", "-noshell", "-eval", expr + " halt()."], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_sign_is_pkcs1v15_sha512_over_the_exact_bytes():
    signature = signing.sign(KEY, PAYLOAD)
    assert len(signature) == 256  # raw bytes for a 2048-bit key, no hex or base64
    KEY.public_key().verify(signature, PAYLOAD, padding.PKCS1v15(), hashes.SHA512())  # raises if wrong
    assert signing.sign(KEY, PAYLOAD) == signature  # PKCS#1 v1.5 is deterministic
    assert signing.verify(KEY.public_key(), PAYLOAD, signature)
    assert signing.verify(KEY, PAYLOAD, signature)  # a private key is accepted for its public half


def test_verify_refuses_tampering_and_other_keys():
    signature = signing.sign(KEY, PAYLOAD)
    assert not signing.verify(KEY.public_key(), PAYLOAD + b"\x00", signature)
    assert not signing.verify(KEY.public_key(), PAYLOAD, signature[:-1] + bytes([signature[-1] ^ 1]))
    assert not signing.verify(KEY.public_key(), PAYLOAD, b"")
    assert not signing.verify(signing.generate_private_key().public_key(), PAYLOAD, signature)
    pss = KEY.sign(PAYLOAD, padding.PSS(padding.MGF1(hashes.SHA512()), 32), hashes.SHA512())
    assert not signing.verify(KEY.public_key(), PAYLOAD, pss)
    sha256 = KEY.sign(PAYLOAD, padding.PKCS1v15(), hashes.SHA256())
    assert not signing.verify(KEY.public_key(), PAYLOAD, sha256)


def test_private_key_pem_round_trip():
    pem = signing.private_key_to_pem(KEY)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----\n")  # PKCS#8, unencrypted
    loaded = signing.load_private_key(pem)
    assert loaded.private_numbers() == KEY.private_numbers()
    assert signing.load_private_key(pem.decode()).private_numbers() == KEY.private_numbers()
    pkcs1 = KEY.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                              serialization.NoEncryption())
    assert pkcs1.startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    assert signing.load_private_key(pkcs1).private_numbers() == KEY.private_numbers()


def test_public_key_pem_is_subject_public_key_info():
    pem = signing.public_key_pem(KEY)
    assert pem.startswith(b"-----BEGIN PUBLIC KEY-----\n") and pem.endswith(b"-----END PUBLIC KEY-----\n")
    assert signing.public_key_pem(KEY.public_key()) == pem
    assert signing.load_public_key(pem).public_numbers() == KEY.public_key().public_numbers()
    assert signing.load_public_key(pem.decode()).public_numbers() == KEY.public_key().public_numbers()


def test_load_public_key_reads_pkcs1_as_mix_hex_registry_build_writes_it():
    pkcs1 = KEY.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)
    assert pkcs1.startswith(b"-----BEGIN RSA PUBLIC KEY-----")
    assert signing.load_public_key(pkcs1).public_numbers() == KEY.public_key().public_numbers()


@pytest.mark.parametrize("pem", [
    b"", b"not a key", b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
    ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
])
def test_unreadable_or_non_rsa_public_keys(pem):
    with pytest.raises(signing.InvalidKey):
        signing.load_public_key(pem)
    assert issubclass(signing.InvalidKey, ValueError)  # what callers catch


def test_unusable_private_keys():
    encrypted = KEY.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.BestAvailableEncryption(b"secret"))
    ec_key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    for pem in (encrypted, ec_key, b"garbage", signing.public_key_pem(KEY)):
        with pytest.raises(signing.InvalidKey):
            signing.load_private_key(pem)
    with pytest.raises(signing.InvalidKey):
        signing.generate_private_key(1024)


# -- fingerprints -----------------------------------------------------------------------------------

def test_fingerprint_of_the_hex_pm_key():
    # The value mix prints and `mix hex.repo add hexpm ... --fetch-public-key` is given for hex.pm.
    key = signing.load_public_key(hexpm.PUBLIC_KEY)
    assert key.key_size == 2048
    assert signing.fingerprint(key) == "SHA256:O1LOYhHFW4kcrblKAxROaDEzLD8bn1seWbe5tq8TRsk"
    assert signing.fingerprint(hexpm.PUBLIC_KEY) == hexpm.PUBLIC_KEY_FINGERPRINT


def test_fingerprint_is_sha256_of_the_openssh_key_blob():
    # cryptography's own OpenSSH encoder is an independent writer of the RFC 4253 blob.
    for bits in (2048, 3072):
        key = KEY if bits == 2048 else signing.generate_private_key(bits)
        line = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        blob = base64.b64decode(line.split()[1])
        expected = "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
        assert signing.fingerprint(key.public_key()) == signing.fingerprint(key) == expected
        assert "=" not in expected and len(expected) == 7 + 43


def test_fingerprint_is_the_same_for_both_pem_forms():
    pkcs1 = KEY.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)
    assert signing.fingerprint(pkcs1) == signing.fingerprint(signing.public_key_pem(KEY))


def test_fingerprint_handles_exponents_and_moduli_with_the_top_bit_set():
    # mpints gain a leading zero byte when their top bit is set; e = 3 and e = 65537 differ in length.
    small_e = rsa.generate_private_key(public_exponent=3, key_size=2048)
    line = small_e.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    digest = hashlib.sha256(base64.b64decode(line.split()[1])).digest()
    assert signing.fingerprint(small_e) == "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen is not installed")
def test_fingerprint_matches_ssh_keygen(tmp_path):
    pem = tmp_path / "key.pem"
    pem.write_bytes(signing.public_key_pem(KEY))
    converted = subprocess.run(["ssh-keygen", "-i", "-m", "PKCS8", "-f", str(pem)], capture_output=True,
                               text=True, check=True)
    (tmp_path / "key.pub").write_text(converted.stdout)
    listed = subprocess.run(["ssh-keygen", "-lf", str(tmp_path / "key.pub")], capture_output=True, text=True,
                            check=True).stdout
    assert listed.split()[0] == "2048" and listed.split()[1] == signing.fingerprint(KEY)


@needs_erl
@pytest.mark.parametrize("form", ["spki", "pkcs1"])
def test_fingerprint_matches_hex_core(tmp_path, form):
    # hex_core hex_repo:fingerprint/1 is ssh:hostkey_fingerprint(sha256, Key) of the decoded PEM.
    pem = signing.public_key_pem(KEY) if form == "spki" else KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)
    (tmp_path / "pub.pem").write_bytes(pem)
    out = _erl(f'{{ok, Pem}} = file:read_file("{tmp_path / "pub.pem"}"), [E] = public_key:pem_decode(Pem), '
               'io:format("~s", [ssh:hostkey_fingerprint(sha256, public_key:pem_entry_decode(E))]),')
    assert out == signing.fingerprint(KEY)


@needs_erl
def test_erlang_signs_exactly_as_we_do(tmp_path):
    # hex_core signs with public_key:sign(Payload, sha512, Key); PKCS#1 v1.5 makes both byte-identical.
    (tmp_path / "key.pem").write_bytes(signing.private_key_to_pem(KEY))
    out = _erl(f'{{ok, Pem}} = file:read_file("{tmp_path / "key.pem"}"), [E] = public_key:pem_decode(Pem), '
               f'Key = public_key:pem_entry_decode(E), P = binary:decode_hex(<<"{PAYLOAD.hex()}">>), '
               'io:format("~s", [binary:encode_hex(public_key:sign(P, sha512, Key))]),')
    assert bytes.fromhex(out) == signing.sign(KEY, PAYLOAD)
