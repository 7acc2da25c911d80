"""Registry v2 files: protobuf messages built at import time from our own field tables, the
Signed envelope, signing and gzip (hexpm/specifications registry-v2.md)."""

import datetime
import gzip
import zlib

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from appliance.protocol import signing

F = descriptor_pb2.FieldDescriptorProto
OPT, REQ, REP = F.LABEL_OPTIONAL, F.LABEL_REQUIRED, F.LABEL_REPEATED
STRING, BYTES, INT32, INT64, UINT32, BOOL, FLOAT, MESSAGE, ENUM = (
    F.TYPE_STRING, F.TYPE_BYTES, F.TYPE_INT32, F.TYPE_INT64, F.TYPE_UINT32, F.TYPE_BOOL, F.TYPE_FLOAT,
    F.TYPE_MESSAGE, F.TYPE_ENUM)

RETIREMENT_REASONS = ("other", "invalid", "security", "deprecated", "renamed")
MAX_FILE = 64 * 1024 * 1024


class SignatureError(ValueError):
    pass


class RegistryError(ValueError):
    pass


_POOL = descriptor_pool.DescriptorPool()


def _file(name, package, messages, enums=()):
    proto = descriptor_pb2.FileDescriptorProto(name=name, package=package, syntax="proto2")
    for enum_name, values in enums:
        enum = proto.enum_type.add(name=enum_name)
        for value_name, number in values:
            enum.value.add(name=value_name, number=number)
    for msg_name, fields in messages:
        msg = proto.message_type.add(name=msg_name)
        for number, field_name, label, ftype, *rest in fields:
            field = msg.field.add(name=field_name, number=number, label=label, type=ftype)
            if rest and rest[0]:
                field.type_name = f".{package}.{rest[0]}"
            if label == REP and ftype in (INT32, UINT32, ENUM) and (len(rest) < 2 or rest[1]):
                field.options.packed = True
    _POOL.Add(proto)
    return {msg_name: message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"{package}.{msg_name}"))
            for msg_name, _ in messages}


# signed.proto
Signed = _file("hexvault/signed.proto", "hexvault.signed", [
    ("Signed", [(1, "payload", REQ, BYTES), (2, "signature", OPT, BYTES)]),
])["Signed"]

# names.proto
_names = _file("hexvault/names.proto", "hexvault.names", [
    ("Names", [(1, "packages", REP, MESSAGE, "Package"), (2, "repository", REQ, STRING)]),
    ("Package", [(1, "name", REQ, STRING), (3, "updated_at", OPT, MESSAGE, "Timestamp")]),
    ("Timestamp", [(1, "seconds", REQ, INT64), (2, "nanos", REQ, INT32)]),
])
Names = _names["Names"]

# versions.proto
Versions = _file("hexvault/versions.proto", "hexvault.versions", [
    ("Versions", [(1, "packages", REP, MESSAGE, "Package"), (2, "repository", REQ, STRING)]),
    ("Package", [(1, "name", REQ, STRING), (2, "versions", REP, STRING), (3, "retired", REP, INT32),
                 (5, "with_advisories", REP, INT32)]),
])["Versions"]

# package.proto
_package = _file("hexvault/package.proto", "hexvault.package", [
    ("Package", [(1, "releases", REP, MESSAGE, "Release"), (2, "name", REQ, STRING), (3, "repository", REQ, STRING),
                 (4, "advisories", REP, MESSAGE, "SecurityAdvisory")]),
    ("Release", [(1, "version", REQ, STRING), (2, "inner_checksum", REQ, BYTES),
                 (3, "dependencies", REP, MESSAGE, "Dependency"), (4, "retired", OPT, MESSAGE, "RetirementStatus"),
                 (5, "outer_checksum", OPT, BYTES), (6, "advisory_indexes", REP, UINT32, None, False),
                 (7, "published_at", OPT, MESSAGE, "Timestamp")]),
    ("RetirementStatus", [(1, "reason", REQ, ENUM, "RetirementReason"), (2, "message", OPT, STRING)]),
    ("Dependency", [(1, "package", REQ, STRING), (2, "requirement", REQ, STRING), (3, "optional", OPT, BOOL),
                    (4, "app", OPT, STRING), (5, "repository", OPT, STRING)]),
    ("SecurityAdvisory", [(1, "id", REQ, STRING), (2, "summary", REQ, STRING), (3, "html_url", REQ, STRING),
                          (4, "severity", OPT, ENUM, "AdvisorySeverity"), (5, "cvss_score", OPT, FLOAT),
                          (6, "api_url", REQ, STRING), (7, "aliases", REP, STRING)]),
    ("Timestamp", [(1, "seconds", REQ, INT64), (2, "nanos", REQ, INT32)]),
], enums=[
    ("RetirementReason", [("RETIRED_OTHER", 0), ("RETIRED_INVALID", 1), ("RETIRED_SECURITY", 2),
                          ("RETIRED_DEPRECATED", 3), ("RETIRED_RENAMED", 4)]),
    ("AdvisorySeverity", [("SEVERITY_NONE", 0), ("SEVERITY_LOW", 1), ("SEVERITY_MEDIUM", 2),
                          ("SEVERITY_HIGH", 3), ("SEVERITY_CRITICAL", 4)]),
])
Package = _package["Package"]


def _set_time(message, value):
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.timezone.utc)
    stamp = value.timestamp()
    message.seconds = int(stamp // 1)
    message.nanos = 0


def encode_names(repository, packages):
    msg = Names(repository=repository)
    for name, updated_at in sorted(packages, key=lambda p: p[0].encode()):
        entry = msg.packages.add(name=name)
        if updated_at is not None:
            _set_time(entry.updated_at, updated_at)
    return msg.SerializeToString()


def encode_versions(repository, packages):
    msg = Versions(repository=repository)
    for pkg in sorted(packages, key=lambda p: p["name"].encode()):
        entry = msg.packages.add(name=pkg["name"])
        entry.versions.extend(pkg["versions"])
        entry.retired.extend(pkg.get("retired") or [])
    return msg.SerializeToString()


def encode_package(repository, name, releases):
    msg = Package(name=name, repository=repository)
    for rel in releases:
        entry = msg.releases.add(version=rel["version"], inner_checksum=rel["inner_checksum"],
                                 outer_checksum=rel["outer_checksum"])
        for dep in sorted(rel.get("dependencies") or [], key=lambda d: d["package"]):
            d = entry.dependencies.add(package=dep["package"], requirement=dep["requirement"])
            if dep.get("optional"):
                d.optional = True
            if dep.get("app") and dep["app"] != dep["package"]:
                d.app = dep["app"]
            if dep.get("repository"):
                d.repository = dep["repository"]
        retired = rel.get("retired")
        if retired:
            entry.retired.reason = RETIREMENT_REASONS.index(retired["reason"])
            if retired.get("message"):
                entry.retired.message = retired["message"]
        if rel.get("published_at") is not None:
            _set_time(entry.published_at, rel["published_at"])
    return msg.SerializeToString()


def sign_and_gzip(payload, private_key):
    signed = Signed(payload=payload, signature=signing.sign(private_key, payload))
    return gzip.compress(signed.SerializeToString(), mtime=0)


def decode_signed(data, public_key=None, *, verify=True):
    try:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        raw = inflater.decompress(data, MAX_FILE)
        if inflater.unconsumed_tail:
            raise RegistryError("registry file too large")
        signed = Signed()
        signed.ParseFromString(raw)
    except RegistryError:
        raise
    except Exception as exc:
        raise RegistryError(f"not a gzipped Signed message: {exc}") from None
    if verify and public_key is not None:
        if not signed.HasField("signature") or not signing.verify(public_key, signed.payload, signed.signature):
            raise SignatureError("signature does not verify")
    return signed.payload


def _origin(msg, expected_repository, expected_name=None):
    if msg.repository != expected_repository:
        raise RegistryError(f"bad_repo_name: registry says {msg.repository!r}, expected {expected_repository!r}")
    if expected_name is not None and msg.name != expected_name:
        raise RegistryError(f"bad_repo_name: package record is for {msg.name!r}, expected {expected_name!r}")


def decode_names(payload, expected_repository):
    msg = Names()
    msg.ParseFromString(payload)
    _origin(msg, expected_repository)
    return {"repository": msg.repository,
            "packages": [{"name": p.name, "updated_at": p.updated_at.seconds if p.HasField("updated_at") else None}
                         for p in msg.packages]}


def decode_versions(payload, expected_repository):
    msg = Versions()
    msg.ParseFromString(payload)
    _origin(msg, expected_repository)
    return {"repository": msg.repository,
            "packages": [{"name": p.name, "versions": list(p.versions), "retired": list(p.retired)}
                         for p in msg.packages]}


def decode_package(payload, expected_repository, expected_name=None):
    msg = Package()
    msg.ParseFromString(payload)
    _origin(msg, expected_repository, expected_name)
    releases = []
    for r in msg.releases:
        retired = None
        if r.HasField("retired"):
            retired = {"reason": RETIREMENT_REASONS[r.retired.reason],
                       "message": r.retired.message if r.retired.HasField("message") else None}
        releases.append({
            "version": r.version, "inner_checksum": r.inner_checksum, "outer_checksum": r.outer_checksum,
            "retired": retired,
            "published_at": r.published_at.seconds if r.HasField("published_at") else None,
            "dependencies": [{"package": d.package, "requirement": d.requirement, "optional": d.optional,
                              "app": d.app if d.HasField("app") else None,
                              "repository": d.repository if d.HasField("repository") else None}
                             for d in r.dependencies]})
    return {"name": msg.name, "repository": msg.repository, "releases": releases}


# -- incremental index building ------------------------------------------------------------------
# Names and Versions are a repeated `packages` field (1) plus `repository` (2). Protobuf lets a
# repeated field's elements be written one after another, so a payload can be assembled from
# entries encoded earlier; a rebuild then re-encodes only the packages that changed. The result
# is byte-identical to encode_names/encode_versions.

def _varint(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _length_delimited(number, data):
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def encode_names_entry(name, updated_at):
    entry = Names().packages.add(name=name)
    if updated_at is not None:
        _set_time(entry.updated_at, updated_at)
    return _length_delimited(1, entry.SerializeToString())


def encode_versions_entry(name, versions, retired):
    entry = Versions().packages.add(name=name)
    entry.versions.extend(versions)
    entry.retired.extend(retired)
    return _length_delimited(1, entry.SerializeToString())


def assemble_index(repository, entries):
    """A Names or Versions payload from entries already sorted by package name."""
    return b"".join(entries) + _length_delimited(2, repository.encode("utf-8"))
