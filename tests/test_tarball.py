"""Package tarballs: byte-exact creation, checksums, and mutated input never escaping as a crash."""

import hashlib
import io
import tarfile

from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.errors import InvalidTarball
from appliance.protocol.tarball import create_package, read_docs, read_package
from tests.driver import erlang_package

GOOD = erlang_package("hello", "1.0.0")


def members(data):
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar}, [m.name for m in tar.getmembers()]


def test_layout_and_checksums_follow_the_spec():
    found, order = members(GOOD)
    assert order == ["VERSION", "CHECKSUM", "metadata.config", "contents.tar.gz"]
    assert found["VERSION"] == b"3"
    inner = hashlib.sha256(found["VERSION"] + found["metadata.config"] + found["contents.tar.gz"]).hexdigest()
    assert found["CHECKSUM"] == inner.upper().encode()
    package = read_package(GOOD)
    assert package.inner_checksum.hex() == inner
    assert package.outer_checksum == hashlib.sha256(GOOD).digest()
    assert package.metadata["name"] == "hello" and "src/hello.erl" in package.files
    assert package.readme.startswith("# hello")


def test_creation_is_deterministic():
    assert erlang_package("hello", "1.0.0") == GOOD


def test_build_tools_are_guessed_when_missing():
    meta = {"name": "x_y", "version": "1.0.0", "app": "x_y", "files": ["mix.exs"], "requirements": []}
    assert read_package(create_package(meta, {"mix.exs": b"defmodule X.MixProject do end"})).metadata[
        "build_tools"] == ["mix"]


def test_docs_tarballs():
    docs = io.BytesIO()
    with tarfile.open(fileobj=docs, mode="w:gz") as tar:
        info = tarfile.TarInfo("index.html")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    assert read_docs(docs.getvalue()) == ["index.html"]


@settings(max_examples=200, deadline=None)
@given(st.integers(0, len(GOOD) - 1), st.integers(1, 255), st.integers(0, len(GOOD)))
def test_fuzz_bit_flips_and_truncation(position, flip, cut):
    mutated = bytearray(GOOD)
    mutated[position] ^= flip
    for data in (bytes(mutated), GOOD[:cut]):
        try:
            read_package(data)
        except InvalidTarball:
            pass


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=2000))
def test_fuzz_garbage(data):
    for reader in (read_package, read_docs):
        try:
            reader(data)
        except InvalidTarball:
            pass
