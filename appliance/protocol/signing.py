"""RSA keys and signatures for registry files, via ``cryptography``.

Contract:

* ``generate_private_key(bits=2048)``; ``private_key_to_pem(key) -> bytes`` (PKCS#8, unencrypted);
  ``load_private_key(pem)`` (PKCS#8 or PKCS#1 ``BEGIN RSA PRIVATE KEY``).
* ``public_key_pem(key) -> bytes``: SubjectPublicKeyInfo (``BEGIN PUBLIC KEY``), the form hex.pm
  serves at ``/public_key``; ``load_public_key(pem)`` reads that and PKCS#1
  (``BEGIN RSA PUBLIC KEY``, what ``mix hex.registry build`` writes) alike.
* ``sign(private_key, payload) -> bytes`` and ``verify(public_key, payload, signature) -> bool``:
  RSASSA-PKCS1-v1_5 with SHA-512 over the exact payload bytes, as hex_core's
  ``public_key:sign(Payload, sha512, Key)`` (hexpm/hex_core src/hex_registry.erl).
* ``fingerprint(key) -> str``: ``SHA256:<unpadded base64>``, the OpenSSH fingerprint that
  ``mix hex.repo add --fetch-public-key`` compares (hex_core ``ssh:hostkey_fingerprint(sha256, Key)``).

Keys that cannot be read, or are not RSA, raise ``InvalidKey`` (a ValueError).
"""

import base64
import hashlib
import struct

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

MIN_BITS = 2048


class InvalidKey(ValueError):
    pass


def generate_private_key(bits=2048):
    if bits < MIN_BITS:
        raise InvalidKey(f"RSA keys shorter than {MIN_BITS} bits are not generated")
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def private_key_to_pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _pem_bytes(pem):
    return pem.encode("ascii", "replace") if isinstance(pem, str) else bytes(pem)


def load_private_key(pem):
    try:
        key = serialization.load_pem_private_key(_pem_bytes(pem), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:  # TypeError: the key is encrypted
        raise InvalidKey(f"not a readable unencrypted PEM private key ({exc})") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise InvalidKey("registry signing keys must be RSA keys")
    return key


def load_public_key(pem):
    # cryptography reads both SubjectPublicKeyInfo and PKCS#1 "RSA PUBLIC KEY" PEM blocks, as
    # OTP's public_key:pem_decode does (hex-protocol.md §3.4).
    try:
        key = serialization.load_pem_public_key(_pem_bytes(pem))
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise InvalidKey(f"not a readable PEM public key ({exc})") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise InvalidKey("registry public keys must be RSA keys")
    return key


def _public(key):
    return key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key


def public_key_pem(key):
    return _public(key).public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def sign(private_key, payload):
    # registry-v2.md "Signing": an RSA signature of the SHA-512 digest of the unencoded payload.
    return private_key.sign(bytes(payload), padding.PKCS1v15(), hashes.SHA512())


def verify(public_key, payload, signature):
    try:
        _public(public_key).verify(bytes(signature), bytes(payload), padding.PKCS1v15(), hashes.SHA512())
    except InvalidSignature:
        return False
    return True


def _ssh_string(data):
    return struct.pack(">I", len(data)) + data


def _ssh_mpint(value):
    # RFC 4251 §5: two's complement, big-endian, with a leading zero byte when the top bit is set.
    return _ssh_string(value.to_bytes((value.bit_length() + 8) // 8, "big") if value else b"")


def fingerprint(key):
    """OpenSSH-style fingerprint of an RSA key (private, public, or PEM of either public form)."""
    if isinstance(key, (bytes, str)):
        key = load_public_key(key)
    numbers = _public(key).public_numbers()
    # RFC 4253 §6.6 "ssh-rsa" public key blob: string "ssh-rsa", mpint e, mpint n.
    blob = _ssh_string(b"ssh-rsa") + _ssh_mpint(numbers.e) + _ssh_mpint(numbers.n)
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
