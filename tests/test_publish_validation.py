"""Bad tarballs sent to the live publish endpoint: each gets a 422 naming the problem, the
server stays up, and nothing is stored (no release row, no blob, no registry change)."""

import gzip
import hashlib
import io
import tarfile

import pytest

from appliance.models import Release
from tests.driver import erlang_package


def outer_tar(members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def contents(files):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


METADATA = (b'{<<"name">>,<<"evil">>}.\n{<<"version">>,<<"1.0.0">>}.\n{<<"app">>,<<"evil">>}.\n'
            b'{<<"build_tools">>,[<<"rebar3">>]}.\n{<<"files">>,[<<"src/evil.erl">>]}.\n'
            b'{<<"requirements">>,[]}.\n')


def with_name(name, utf8=False):
    spelled = b'<<"' + name + (b'"/utf8>>' if utf8 else b'">>')
    return METADATA.replace(b'{<<"name">>,<<"evil">>}', b'{<<"name">>,' + spelled + b'}')


def package(metadata=METADATA, files=(("src/evil.erl", b"-module(evil).\n"),), version=b"3", checksum=None):
    body = contents(files)
    inner = checksum or hashlib.sha256(version + metadata + body).hexdigest().upper().encode()
    return outer_tar([("VERSION", version), ("CHECKSUM", inner), ("metadata.config", metadata),
                      ("contents.tar.gz", body)])


def bomb():
    """A contents.tar.gz that inflates to 200 MiB of zeros, built in small chunks."""
    raw = io.BytesIO()
    with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        header = tarfile.TarInfo("src/evil.erl")
        header.size = 200 * 1024 * 1024
        gz.write(header.tobuf(format=tarfile.USTAR_FORMAT))
        chunk = bytes(1 << 20)
        for _ in range(200):
            gz.write(chunk)
    body = raw.getvalue()
    inner = hashlib.sha256(b"3" + METADATA + body).hexdigest().upper().encode()
    return outer_tar([("VERSION", b"3"), ("CHECKSUM", inner), ("metadata.config", METADATA),
                      ("contents.tar.gz", body)])


CORPUS = {
    "empty": lambda: b"",
    "garbage": lambda: b"\x00garbage" * 100,
    "truncated": lambda: erlang_package("evil", "1.0.0")[:700],
    "wrong_checksum": lambda: package(checksum=b"0" * 64),
    "version_2": lambda: package(version=b"2"),
    "missing_member": lambda: outer_tar([("VERSION", b"3"), ("metadata.config", METADATA)]),
    "traversal": lambda: package(files=(("../../etc/evil", b"x"),)),
    "absolute_path": lambda: package(files=(("/etc/evil", b"x"),)),
    "code_in_metadata": lambda: package(metadata=b'{<<"name">>, os:cmd("touch /tmp/pwned")}.\n'),
    "unterminated_metadata": lambda: package(metadata=b'{<<"name">>,<<"evil'),
    "bad_name": lambda: package(metadata=METADATA.replace(b'<<"evil">>}.\n{<<"version', b'<<"Evil!">>}.\n{<<"version')),
    "build_version": lambda: package(metadata=METADATA.replace(b"1.0.0", b"1.0.0+build.1")),
    "bad_requirement": lambda: package(metadata=METADATA.replace(
        b"{<<\"requirements\">>,[]}", b'{<<"requirements">>,[{<<"dep">>,[{<<"requirement">>,<<"~> banana">>}]}]}')),
    "bomb": bomb,
    # Names and versions: bounded (every file name derived from them fits in 255 bytes) and
    # matched whole (a trailing newline, a NUL or a look-alike letter is not a name).
    "name_300": lambda: package(metadata=with_name(b"a" * 300)),
    "name_101": lambda: package(metadata=with_name(b"a" * 101)),
    "name_trailing_newline": lambda: package(metadata=with_name(b"evil\\n")),
    "name_nul": lambda: package(metadata=with_name(b"evil\\x00")),
    "name_cyrillic_lookalike": lambda: package(metadata=with_name("\u0435vil".encode(), utf8=True)),
    "version_trailing_newline": lambda: package(metadata=METADATA.replace(b'<<"1.0.0">>', b'<<"1.0.0\\n">>')),
    "dependency_name_trailing_newline": lambda: package(metadata=METADATA.replace(
        b"{<<\"requirements\">>,[]}", b'{<<"requirements">>,[{<<"dep\\n">>,[{<<"requirement">>,<<"~> 1.0">>}]}]}')),
    "dependency_name_300": lambda: package(metadata=METADATA.replace(
        b"{<<\"requirements\">>,[]}", b'{<<"requirements">>,[{<<"' + b"d" * 300 + b'">>,[{<<"requirement">>,<<"~> 1.0">>}]}]}')),
}


@pytest.mark.parametrize("case", sorted(CORPUS))
def test_bad_tarball_is_refused_and_nothing_is_stored(hv, case):
    blobs_before = sorted(hv.runtime.store.list())
    names_before = hv.repo("names").content
    response = hv.api("POST", "repos/acme/publish?replace=false", data=CORPUS[case]())
    assert response.status_code == 422, response.content[:300]
    assert response.term["message"] == "Validation error(s)"
    assert response.term["errors"] and all(isinstance(v, str) for v in response.term["errors"].values())
    assert Release.select().count() == 0
    assert sorted(hv.runtime.store.list()) == blobs_before
    assert hv.repo("names").content == names_before
    # the server is still up and publishes good packages
    assert hv.publish(erlang_package("good", "1.0.0")).status_code == 201


def test_oversized_upload_is_refused_before_reading(hv):
    limit = hv.runtime.config.max_tarball_size
    for path in ("repos/acme/publish?replace=false", "repos/acme/packages/hello/releases/0.1.0/docs"):
        response = hv.api("POST", path, data=b"\0" * (limit + 1))
        assert response.status_code == 422
        # The declared length refused it (api._upload_body), not the size check after reading.
        assert response.term["errors"]["tar"] == f"too big: the upload is {limit + 1} bytes; the limit is {limit}"


def test_longest_name_is_published_and_served(hv):
    name = "a" + "b" * 99  # MAX_NAME_LENGTH
    assert hv.publish(erlang_package(name, "1.0.0")).status_code == 201
    assert [r["version"] for r in hv.registry_package(name)["releases"]] == ["1.0.0"]
    assert hv.repo(f"tarballs/{name}-1.0.0.tar").status_code == 200
