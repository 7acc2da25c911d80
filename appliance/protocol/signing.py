"""RSA keys and signatures for registry files (PKCS#1 v1.5 with SHA-512), via cryptography."""

import base64
import hashlib
import struct

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa


def generate_private_key(bits=2048):
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def private_key_to_pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def load_private_key(pem):
    return serialization.load_pem_private_key(pem, password=None)


def public_key_pem(key):
    public = key.public_key() if hasattr(key, "public_key") else key
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_public_key(pem):
    """SubjectPublicKeyInfo or PKCS#1 (`BEGIN RSA PUBLIC KEY`, as mix hex.registry build writes)."""
    if b"BEGIN RSA PUBLIC KEY" in pem:
        return serialization.load_pem_public_key(pem)
    return serialization.load_pem_public_key(pem)


def sign(private_key, payload):
    # registry-v2.md: an RSA signature of the SHA-512 digest of the unencoded payload.
    return private_key.sign(payload, padding.PKCS1v15(), hashes.SHA512())


def verify(public_key, payload, signature):
    try:
        public_key.verify(signature, payload, padding.PKCS1v15(), hashes.SHA512())
        return True
    except InvalidSignature:
        return False


def _ssh_mpint(value):
    data = value.to_bytes((value.bit_length() + 8) // 8, "big") if value else b""
    return struct.pack(">I", len(data)) + data


def fingerprint(public_key):
    """OpenSSH-style SHA256 fingerprint, as `mix hex.repo add --fetch-public-key` expects."""
    if hasattr(public_key, "public_key") and not hasattr(public_key, "public_numbers"):
        public_key = public_key.public_key()
    numbers = public_key.public_numbers()
    blob = struct.pack(">I", 7) + b"ssh-rsa" + _ssh_mpint(numbers.e) + _ssh_mpint(numbers.n)
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
