"""Registry v2 files byte by byte: field numbers and wire types (read back with a protobuf wire
walker written here, independent of the protobuf library), content rules, signatures, gzip and the
origin checks hex_core makes."""

import datetime
import gzip
import hashlib
import shutil
import subprocess
import zlib

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from google.protobuf import descriptor_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.protocol import registry, signing

KEY = signing.generate_private_key()
UTC = datetime.timezone.utc
PUBLISHED = datetime.datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)
RELEASE = dict(version="1.0.0", inner_checksum=b"\x11" * 32, outer_checksum=b"\x22" * 32, retired=None,
               published_at=None, dependencies=[dict(package="dep", requirement="~> 1.0", optional=True,
                                                      app="dep_app", repository="hexpm")])


# -- a minimal protobuf wire reader -------------------------------------------------------------------

def varint(data, i):
    value = shift = 0
    while True:
        byte = data[i]
        value |= (byte & 0x7F) << shift
        i, shift = i + 1, shift + 7
        if not byte & 0x80:
            return value, i


def fields(data):
    """[(field number, wire type, value)]: value is an int (varint) or bytes (length-delimited)."""
    out, i = [], 0
    while i < len(data):
        key, i = varint(data, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = varint(data, i)
        elif wire == 2:
            length, i = varint(data, i)
            value, i = data[i:i + length], i + length
        else:
            raise AssertionError(f"unexpected wire type {wire}")
        out.append((number, wire, value))
    assert i == len(data)
    return out


def packed(data):
    values, i = [], 0
    while i < len(data):
        value, i = varint(data, i)
        values.append(value)
    return values


# -- field numbers on the wire --------------------------------------------------------------------------

def test_package_field_numbers_on_the_wire():
    payload = registry.encode_package("acme", "foo", [dict(RELEASE, retired={"reason": "security", "message": "CVE"},
                                                           published_at=PUBLISHED)])
    top = fields(payload)
    assert [(n, w) for n, w, _ in top] == [(1, 2), (2, 2), (3, 2)]  # releases, name, repository
    assert top[1][2] == b"foo" and top[2][2] == b"acme"
    assert payload.endswith(b"\x12\x03foo\x1a\x04acme")
    release = fields(top[0][2])
    assert [(n, w) for n, w, _ in release] == [(1, 2), (2, 2), (3, 2), (4, 2), (5, 2), (7, 2)]
    assert release[0][2] == b"1.0.0"
    raw = top[0][2]
    assert b"\x12\x20" + b"\x11" * 32 in raw  # inner_checksum: field 2, length-delimited, 32 bytes
    assert b"\x2a\x20" + b"\x22" * 32 in raw  # outer_checksum: field 5 -> tag 0x2a
    assert fields(release[3][2]) == [(1, 0, 2), (2, 2, b"CVE")]  # RetirementStatus{reason=SECURITY, message}
    assert b"\x22\x07\x08\x02\x12\x03CVE" in raw
    seconds = int((PUBLISHED - datetime.datetime(1970, 1, 1, tzinfo=UTC)).total_seconds())
    assert fields(release[5][2]) == [(1, 0, seconds), (2, 0, 123456000)]  # Timestamp{seconds, nanos}
    assert fields(release[2][2]) == [(1, 2, b"dep"), (2, 2, b"~> 1.0"), (3, 0, 1), (4, 2, b"dep_app"),
                                     (5, 2, b"hexpm")]


def test_names_field_numbers_on_the_wire():
    payload = registry.encode_names("acme", [("foo", datetime.datetime(2026, 1, 1, 0, 0, 1)), ("bar", None)])
    top = fields(payload)
    assert [(n, w) for n, w, _ in top] == [(1, 2), (1, 2), (2, 2)]
    assert fields(top[0][2]) == [(1, 2, b"bar")]  # sorted; no updated_at when none is given
    foo = fields(top[1][2])
    assert [(n, w) for n, w, _ in foo] == [(1, 2), (3, 2)] and foo[0][2] == b"foo"  # updated_at is field 3
    assert fields(foo[1][2]) == [(1, 0, 1767225601), (2, 0, 0)]  # 2026-01-01T00:00:01Z, nanos written as 0
    assert top[2][2] == b"acme"


def test_versions_retired_indexes_are_packed():
    payload = registry.encode_versions("acme", [{"name": "foo", "versions": ["1.0.0", "1.1.0", "2.0.0"],
                                                 "retired": [2, 0]}])
    top = fields(payload)
    package = fields(top[0][2])
    assert package == [(1, 2, b"foo"), (2, 2, b"1.0.0"), (2, 2, b"1.1.0"), (2, 2, b"2.0.0"), (3, 2, b"\x00\x02")]
    assert b"\x1a\x02\x00\x02" in payload  # field 3, wire type 2 (packed): varints 0 and 2
    assert packed(package[4][2]) == [0, 2]
    assert registry.decode_versions(payload, "acme")["packages"] == [
        {"name": "foo", "versions": ["1.0.0", "1.1.0", "2.0.0"], "retired": [0, 2]}]


def test_signed_field_numbers_on_the_wire():
    payload = registry.encode_names("acme", [])
    signed = gzip.decompress(registry.sign_and_gzip(payload, KEY))
    assert fields(signed) == [(1, 2, payload), (2, 2, signing.sign(KEY, payload))]


def test_descriptors_follow_the_specification():
    """Spot checks of what the wire tests cannot see: labels, and the packing of fields we never write."""
    release = registry.Release.DESCRIPTOR
    advisory_indexes = release.fields_by_name["advisory_indexes"]
    assert advisory_indexes.number == 6 and not advisory_indexes.is_packed  # not packed in package.proto
    msg = registry.Release(version="1", inner_checksum=b"", advisory_indexes=[1, 2])
    assert (6, 0, 1) in fields(msg.SerializeToString())  # one varint per element, tag 0x30
    with_advisories = registry.VersionsPackage.DESCRIPTOR.fields_by_name["with_advisories"]
    assert with_advisories.number == 5 and with_advisories.is_packed
    assert registry.VersionsPackage.DESCRIPTOR.fields_by_name["retired"].is_packed
    for cls in (registry.Signed, registry.Names, registry.Versions, registry.Package):
        proto = descriptor_pb2.FileDescriptorProto.FromString(cls.DESCRIPTOR.file.serialized_pb)
        assert proto.syntax in ("", "proto2") and proto.package.startswith("hexvault.")  # "" means proto2
    assert [f.number for f in registry.SecurityAdvisory.DESCRIPTOR.fields] == [1, 2, 3, 4, 5, 6, 7]
    required = {(m.DESCRIPTOR.name, f.name) for m in (registry.Signed, registry.Names, registry.Versions,
                                                      registry.Package, registry.Release, registry.Dependency,
                                                      registry.RetirementStatus, registry.Timestamp)
                for f in m.DESCRIPTOR.fields if f.is_required}
    assert required == {("Signed", "payload"), ("Names", "repository"), ("Versions", "repository"),
                        ("Package", "name"), ("Package", "repository"), ("Release", "version"),
                        ("Release", "inner_checksum"), ("Dependency", "package"), ("Dependency", "requirement"),
                        ("RetirementStatus", "reason"), ("Timestamp", "seconds"), ("Timestamp", "nanos")}
    reasons = registry.RetirementStatus.DESCRIPTOR.fields_by_name["reason"].enum_type
    assert [(v.name, v.number) for v in reasons.values] == [
        ("RETIRED_OTHER", 0), ("RETIRED_INVALID", 1), ("RETIRED_SECURITY", 2), ("RETIRED_DEPRECATED", 3),
        ("RETIRED_RENAMED", 4)]


# -- content rules ------------------------------------------------------------------------------------------

def test_dependency_content_rules_of_hexpm():
    deps = [dict(package="zeta", requirement="~> 1.0", optional=False, app="zeta", repository=None),
            dict(package="alpha", requirement=None, optional=True, app=None, repository="hexpm"),
            dict(package="mid", requirement=">= 2.0.0", optional=False, app="mid_app", repository=None)]
    payload = registry.encode_package("acme", "foo", [dict(RELEASE, dependencies=deps)])
    release = fields(fields(payload)[0][2])
    written = [fields(v) for n, _, v in release if n == 3]
    assert written == [
        [(1, 2, b"alpha"), (2, 2, b">= 0.0.0"), (3, 0, 1), (5, 2, b"hexpm")],  # requirement defaults to >= 0.0.0
        [(1, 2, b"mid"), (2, 2, b">= 2.0.0"), (4, 2, b"mid_app")],             # app only when it differs
        [(1, 2, b"zeta"), (2, 2, b"~> 1.0")],                                  # optional only when true
    ]
    assert registry.decode_package(payload, "acme", "foo")["releases"][0]["dependencies"][2] == {
        "package": "zeta", "requirement": "~> 1.0", "optional": False, "app": None, "repository": None}


def test_release_without_retirement_or_time_has_no_such_fields():
    release = fields(fields(registry.encode_package("acme", "foo", [RELEASE]))[0][2])
    assert [n for n, _, _ in release] == [1, 2, 3, 5]
    retired = registry.encode_package("acme", "foo", [dict(RELEASE, retired={"reason": "other", "message": None})])
    assert fields(fields(fields(retired)[0][2])[3][2]) == [(1, 0, 0)]  # reason only, RETIRED_OTHER = 0


def test_packages_are_sorted_by_name_in_byte_order():
    names = registry.encode_names("acme", [("b", None), ("a_b", None), ("B", None), ("ab", None)])
    assert [fields(v)[0][2] for n, _, v in fields(names) if n == 1] == [b"B", b"a_b", b"ab", b"b"]
    versions = registry.encode_versions("acme", [{"name": "b", "versions": ["1.0.0"]},
                                                 {"name": "a", "versions": ["1.0.0"], "retired": []}])
    assert [p["name"] for p in registry.decode_versions(versions, "acme")["packages"]] == ["a", "b"]


@pytest.mark.parametrize("call", [
    lambda: registry.encode_names("acme", [("a", None), ("a", None)]),
    lambda: registry.encode_versions("acme", [{"name": "a", "versions": ["1.0.0"], "retired": [1]}]),
    lambda: registry.encode_package("acme", "foo", [dict(RELEASE, outer_checksum=b"\x22" * 31)]),
    lambda: registry.encode_package("acme", "foo", [dict(RELEASE, inner_checksum="11" * 32)]),
    lambda: registry.encode_package("acme", "foo", [dict(RELEASE, outer_checksum=None)]),
    lambda: registry.encode_package("acme", "foo", [dict(RELEASE, retired={"reason": "bored"})]),
])
def test_inputs_that_would_make_a_broken_registry_are_refused(call):
    with pytest.raises(registry.RegistryError) as err:
        call()
    assert err.value.reason == "bad_input"


# -- round trips ---------------------------------------------------------------------------------------------

def test_round_trips():
    naive = datetime.datetime(2026, 1, 2, 3, 4, 5, 6)
    names = registry.decode_names(registry.encode_names("acme", [("foo", naive), ("bar", None)]), "acme")
    assert names == {"repository": "acme", "packages": [{"name": "bar", "updated_at": None},
                                                        {"name": "foo", "updated_at": naive.replace(tzinfo=UTC)}]}
    releases = [dict(RELEASE, version="1.0.0-rc.1", published_at=PUBLISHED),
                dict(RELEASE, version="1.0.0", retired={"reason": "renamed", "message": "use bar"},
                     dependencies=[], published_at=datetime.datetime(1969, 12, 31, 23, 59, 59, 500000))]
    record = registry.decode_package(registry.encode_package("acme", "foo", releases), "acme", "foo")
    assert record["name"] == "foo" and record["repository"] == "acme"
    assert record["releases"][0] == {
        "version": "1.0.0-rc.1", "inner_checksum": b"\x11" * 32, "outer_checksum": b"\x22" * 32, "retired": None,
        "published_at": PUBLISHED, "dependencies": [{"package": "dep", "requirement": "~> 1.0", "optional": True,
                                                     "app": "dep_app", "repository": "hexpm"}]}
    assert record["releases"][1]["retired"] == {"reason": "renamed", "message": "use bar"}
    assert record["releases"][1]["published_at"] == datetime.datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=UTC)


def test_incremental_index_is_byte_identical():
    stamp = datetime.datetime(2026, 5, 6, 7, 8, 9, 10)
    packages = [("a", stamp), ("b", None)]
    entries = [registry.encode_names_entry(n, t) for n, t in packages]
    assert registry.assemble_index("acme", entries) == registry.encode_names("acme", packages)
    listed = [{"name": "a", "versions": ["1.0.0", "2.0.0"], "retired": [1]}, {"name": "b", "versions": ["0.1.0"]}]
    entries = [registry.encode_versions_entry(p["name"], p["versions"], p.get("retired", [])) for p in listed]
    assert registry.assemble_index("acme", entries) == registry.encode_versions("acme", listed)
    assert registry.assemble_index("acme", []) == registry.encode_names("acme", [])


# -- signing and gzip ----------------------------------------------------------------------------------------

def test_signed_gzip_verifies_with_the_public_key():
    payload = registry.encode_package("acme", "foo", [RELEASE])
    data = registry.sign_and_gzip(payload, KEY)
    assert data[:4] == b"\x1f\x8b\x08\x00" and data[4:8] == b"\x00\x00\x00\x00"  # gzip, no name, mtime 0
    assert registry.sign_and_gzip(payload, KEY) == data  # reproducible, so ETags are stable
    signed = registry.Signed.FromString(gzip.decompress(data))
    assert signed.payload == payload
    # verified with cryptography directly: PKCS#1 v1.5 with SHA-512 over the payload bytes
    KEY.public_key().verify(signed.signature, payload, padding.PKCS1v15(), hashes.SHA512())
    assert registry.decode_signed(data, KEY.public_key()) == payload


def _signed_file(payload, signature):
    return gzip.compress(registry.Signed(payload=payload, signature=signature).SerializeToString())


def test_tampered_unsigned_or_foreign_files_fail():
    payload = registry.encode_names("acme", [("foo", None)])
    signature = signing.sign(KEY, payload)
    public = KEY.public_key()
    failures = {
        "tampered": _signed_file(payload.replace(b"foo", b"bar"), signature),
        "other key": registry.sign_and_gzip(payload, signing.generate_private_key()),
        "unsigned": gzip.compress(registry.Signed(payload=payload).SerializeToString()),
        "empty signature": _signed_file(payload, b""),
    }
    for what, data in failures.items():
        with pytest.raises(registry.SignatureError) as err:
            registry.decode_signed(data, public)
        assert err.value.reason == "bad_signature", what
    with pytest.raises(registry.SignatureError, match="no public key"):
        registry.decode_signed(registry.sign_and_gzip(payload, KEY))  # fail closed
    assert registry.decode_signed(failures["unsigned"], verify=False) == payload  # HEX_UNSAFE_REGISTRY
    assert issubclass(registry.SignatureError, registry.RegistryError)


def test_broken_files_are_registry_errors():
    data = registry.sign_and_gzip(registry.encode_names("acme", [("foo", None)]), KEY)
    raw = gzip.decompress(data)
    cases = {
        "not gzip": raw,
        "truncated": data[:-4],  # zlib:gunzip in hex_core refuses it too (data_error)
        "trailing bytes": data + b"junk",
        "no payload": gzip.compress(registry.Signed(signature=b"x").SerializePartialToString()),
        "not protobuf": gzip.compress(b"\xff\xff\xff"),
        "bare deflate": zlib.compress(raw),
        "not bytes": "text",
    }
    for what, case in cases.items():
        with pytest.raises(registry.RegistryError):
            registry.decode_signed(case, KEY.public_key())
    with pytest.raises(registry.RegistryError, match="too_large"):
        registry.decode_signed(gzip.compress(b"\x00" * 10_000), KEY.public_key(), max_size=1000)


# -- origin checks -------------------------------------------------------------------------------------------

def test_origin_check_like_hex_core():
    payload = registry.encode_package("acme", "foo", [RELEASE])
    assert registry.decode_package(payload, "acme", "foo")["name"] == "foo"
    for repository, name in (("other", "foo"), ("acme", "bar"), ("Acme", "foo")):
        with pytest.raises(registry.RegistryError, match="bad_repo_name") as err:
            registry.decode_package(payload, repository, name)
        assert err.value.reason == "bad_repo_name"
    for decode, encoded in ((registry.decode_names, registry.encode_names("acme", [])),
                            (registry.decode_versions, registry.encode_versions("acme", []))):
        assert decode(encoded, "acme")["repository"] == "acme"
        with pytest.raises(registry.RegistryError, match="bad_repo_name"):
            decode(encoded, "hexpm")


@pytest.mark.parametrize("decode", [lambda p: registry.decode_names(p, "acme"),
                                    lambda p: registry.decode_versions(p, "acme"),
                                    lambda p: registry.decode_package(p, "acme", "foo")])
@pytest.mark.parametrize("payload", [
    b"\xff\xff", b"\x0a\x05abc",  # garbage, truncated
    b"",  # a message without its required repository
    b"\x12\x02\xff\xfe",  # repository that is not UTF-8
    b"\x0a\x00\x12\x04acme",  # a package entry without its required name
])
def test_malformed_payloads_are_registry_errors(decode, payload):
    with pytest.raises(registry.RegistryError):
        decode(payload)


def test_package_record_missing_required_release_fields():
    broken = registry.Package(name="foo", repository="acme")
    broken.releases.add(version="1.0.0")  # no inner_checksum
    with pytest.raises(registry.RegistryError, match="required"):
        registry.decode_package(broken.SerializePartialToString(), "acme", "foo")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_decoding_raises_only_registry_errors(data):
    for call in (lambda: registry.decode_signed(data, KEY.public_key()),
                 lambda: registry.decode_signed(gzip.compress(data, mtime=0), verify=False),
                 lambda: registry.decode_package(data, "acme", "foo"),
                 lambda: registry.decode_names(data, "acme"),
                 lambda: registry.decode_versions(data, "acme")):
        try:
            call()
        except registry.RegistryError:
            pass


def test_checksums_are_raw_sha256_bytes():
    data = b"tarball bytes"
    payload = registry.encode_package("acme", "foo", [dict(RELEASE, outer_checksum=hashlib.sha256(data).digest())])
    assert registry.decode_package(payload, "acme", "foo")["releases"][0]["outer_checksum"] == \
        hashlib.sha256(data).digest()


# -- against a real Erlang VM --------------------------------------------------------------------------------

@pytest.mark.skipif(shutil.which("erl") is None, reason="Erlang (erl) is not installed")
@pytest.mark.parametrize("form", ["spki", "pkcs1"])
def test_erlang_gunzips_and_verifies_our_file(tmp_path, form):
    # What hex_core does with a registry file: zlib:gunzip, then public_key:verify(Payload, sha512,
    # Signature, Key) with the key read by public_key:pem_decode (hex_registry.erl).
    payload = registry.encode_package("acme", "foo", [RELEASE])
    data = registry.sign_and_gzip(payload, KEY)
    signed = registry.Signed.FromString(gzip.decompress(data))
    pem = signing.public_key_pem(KEY) if form == "spki" else KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)
    (tmp_path / "pub.pem").write_bytes(pem)
    (tmp_path / "file").write_bytes(data)
    expr = (f'{{ok, Pem}} = file:read_file("{tmp_path / "pub.pem"}"), [E] = public_key:pem_decode(Pem), '
            f'Key = public_key:pem_entry_decode(E), {{ok, F}} = file:read_file("{tmp_path / "file"}"), '
            f'S = zlib:gunzip(F), true = (S =:= binary:decode_hex(<<"{gzip.decompress(data).hex()}">>)), '
            f'P = binary:decode_hex(<<"{signed.payload.hex()}">>), '
            f'Sig = binary:decode_hex(<<"{signed.signature.hex()}">>), '
            'io:format("~p ~p", [public_key:verify(P, sha512, Sig, Key), '
            'public_key:verify(<<P/binary, 0>>, sha512, Sig, Key)]), halt().')
    out = subprocess.run(["erl", "-noshell", "-eval", expr], capture_output=True, text=True, timeout=120)
    assert out.stdout == "true false", out.stdout + out.stderr
