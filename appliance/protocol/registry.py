"""Registry v2 files: protobuf payloads, the Signed envelope, signing and gzip.

Contract (hexpm/specifications registry-v2.md, registry/*.proto; hex-protocol.md §3):

* Message classes ``Signed``, ``Names``, ``Versions``, ``Package`` (and ``NamesPackage``,
  ``VersionsPackage``, ``Release``, ``Dependency``, ``RetirementStatus``, ``Timestamp``,
  ``SecurityAdvisory``) are built at import time from the field tables below: no protoc and no
  .proto files. Field numbers, types, labels and packing follow the specification exactly.
* ``encode_names(repository, [(name, updated_at | None)]) -> bytes``,
  ``encode_versions(repository, [{name, versions, retired}]) -> bytes`` and
  ``encode_package(repository, name, [release]) -> bytes`` return *payloads*. Packages are sorted
  here by name in byte order; versions and releases are written in the order given, which must
  be ascending SemVer (the caller sorts, with versions.sort_versions).
* ``sign_and_gzip(payload, private_key) -> bytes`` makes the file that is served.
* ``decode_signed(file, public_key, *, verify=True) -> payload`` and
  ``decode_names|decode_versions|decode_package(payload, repository[, name]) -> dict`` reverse it,
  checking the origin like hex_core. Failures raise ``RegistryError``; signature failures raise
  its subclass ``SignatureError``.
"""

import datetime
import gzip
import zlib

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from appliance.protocol import signing

RETIREMENT_REASONS = ("other", "invalid", "security", "deprecated", "renamed")  # enum values 0..4
MAX_FILE = 64 * 1024 * 1024  # uncompressed; hex.pm's own names/versions are a few MiB
CHECKSUM_SIZE = 32
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


class RegistryError(ValueError):
    """``reason`` is the hex_core-style atom the message starts with (bad_repo_name, bad_signature,
    bad_message, not_gzip, too_large, bad_input)."""

    def __init__(self, message):
        super().__init__(message)
        self.reason = message.split(":", 1)[0]


class SignatureError(RegistryError):
    pass


# -- message classes ----------------------------------------------------------------------------------

_F = descriptor_pb2.FieldDescriptorProto
_LABELS = {"opt": _F.LABEL_OPTIONAL, "req": _F.LABEL_REQUIRED, "rep": _F.LABEL_REPEATED}
_TYPES = {"string": _F.TYPE_STRING, "bytes": _F.TYPE_BYTES, "int32": _F.TYPE_INT32, "int64": _F.TYPE_INT64,
          "uint32": _F.TYPE_UINT32, "bool": _F.TYPE_BOOL, "float": _F.TYPE_FLOAT}
_POOL = descriptor_pool.DescriptorPool()  # our own pool: nothing clashes with other protobuf users


def _proto_file(name, package, messages, enums=()):
    """Add one proto2 file to the pool. A field is (number, name, label, type[, "packed"]);
    a type that is not a scalar names a message or enum of the same file."""
    proto = descriptor_pb2.FileDescriptorProto(name=name, package=package, syntax="proto2")
    enum_names = {enum_name for enum_name, _ in enums}
    for enum_name, values in enums:
        enum = proto.enum_type.add(name=enum_name)
        for number, value_name in enumerate(values):
            enum.value.add(name=value_name, number=number)
    for msg_name, fields in messages:
        msg = proto.message_type.add(name=msg_name)
        for number, field_name, label, ftype, *flags in fields:
            field = msg.field.add(name=field_name, number=number, label=_LABELS[label])
            if ftype in _TYPES:
                field.type = _TYPES[ftype]
            else:
                field.type = _F.TYPE_ENUM if ftype in enum_names else _F.TYPE_MESSAGE
                field.type_name = f".{package}.{ftype}"
            if "packed" in flags:
                field.options.packed = True
    _POOL.Add(proto)
    return [message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"{package}.{m}")) for m, _ in messages]


_TIMESTAMP = ("Timestamp", [(1, "seconds", "req", "int64"), (2, "nanos", "req", "int32")])

# signed.proto
(Signed,) = _proto_file("hexvault/signed.proto", "hexvault.signed", [
    ("Signed", [(1, "payload", "req", "bytes"), (2, "signature", "opt", "bytes")]),
])

# names.proto (field 2 of Package, "repository", is reserved: never used)
Names, NamesPackage, _ = _proto_file("hexvault/names.proto", "hexvault.names", [
    ("Names", [(1, "packages", "rep", "Package"), (2, "repository", "req", "string")]),
    ("Package", [(1, "name", "req", "string"), (3, "updated_at", "opt", "Timestamp")]),
    _TIMESTAMP,
])

# versions.proto (field 4 of Package, "repository", is reserved: never used)
Versions, VersionsPackage = _proto_file("hexvault/versions.proto", "hexvault.versions", [
    ("Versions", [(1, "packages", "rep", "Package"), (2, "repository", "req", "string")]),
    ("Package", [(1, "name", "req", "string"), (2, "versions", "rep", "string"),
                 (3, "retired", "rep", "int32", "packed"), (5, "with_advisories", "rep", "int32", "packed")]),
])

# package.proto (advisory_indexes is *not* packed in the specification)
Package, Release, RetirementStatus, Dependency, SecurityAdvisory, Timestamp = _proto_file(
    "hexvault/package.proto", "hexvault.package", [
        ("Package", [(1, "releases", "rep", "Release"), (2, "name", "req", "string"),
                     (3, "repository", "req", "string"), (4, "advisories", "rep", "SecurityAdvisory")]),
        ("Release", [(1, "version", "req", "string"), (2, "inner_checksum", "req", "bytes"),
                     (3, "dependencies", "rep", "Dependency"), (4, "retired", "opt", "RetirementStatus"),
                     (5, "outer_checksum", "opt", "bytes"), (6, "advisory_indexes", "rep", "uint32"),
                     (7, "published_at", "opt", "Timestamp")]),
        ("RetirementStatus", [(1, "reason", "req", "RetirementReason"), (2, "message", "opt", "string")]),
        ("Dependency", [(1, "package", "req", "string"), (2, "requirement", "req", "string"),
                        (3, "optional", "opt", "bool"), (4, "app", "opt", "string"),
                        (5, "repository", "opt", "string")]),
        ("SecurityAdvisory", [(1, "id", "req", "string"), (2, "summary", "req", "string"),
                              (3, "html_url", "req", "string"), (4, "severity", "opt", "AdvisorySeverity"),
                              (5, "cvss_score", "opt", "float"), (6, "api_url", "req", "string"),
                              (7, "aliases", "rep", "string")]),
        _TIMESTAMP,
    ], enums=[
        ("RetirementReason", ["RETIRED_" + r.upper() for r in RETIREMENT_REASONS]),
        ("AdvisorySeverity", ["SEVERITY_NONE", "SEVERITY_LOW", "SEVERITY_MEDIUM", "SEVERITY_HIGH",
                              "SEVERITY_CRITICAL"]),
    ])


# -- encoding -----------------------------------------------------------------------------------------

def _set_time(message, value):
    """Timestamp as hexpm writes it (registry_builder.ex to_unix_nano); naive datetimes are UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.timezone.utc)
    delta = value - EPOCH
    message.seconds = delta.days * 86400 + delta.seconds
    message.nanos = delta.microseconds * 1000


def _by_name(items, name_of):
    items = sorted(items, key=lambda item: name_of(item).encode("utf-8"))
    for a, b in zip(items, items[1:]):
        if name_of(a) == name_of(b):
            raise RegistryError(f"bad_input: duplicate package {name_of(a)!r}")
    return items


def _fill_names_entry(entry, name, updated_at):
    entry.name = name
    if updated_at is not None:
        _set_time(entry.updated_at, updated_at)


def _fill_versions_entry(entry, name, versions, retired):
    entry.name = name
    entry.versions.extend(versions)
    indexes = sorted(set(retired or ()))
    if indexes and not 0 <= indexes[0] <= indexes[-1] < len(versions):
        raise RegistryError(f"bad_input: {name}: retired index out of range")
    entry.retired.extend(indexes)  # 0-based indexes into versions (versions.proto)


def encode_names(repository, packages):
    msg = Names(repository=repository)
    for name, updated_at in _by_name(packages, lambda p: p[0]):
        _fill_names_entry(msg.packages.add(), name, updated_at)
    return msg.SerializeToString()


def encode_versions(repository, packages):
    msg = Versions(repository=repository)
    for pkg in _by_name(packages, lambda p: p["name"]):
        _fill_versions_entry(msg.packages.add(), pkg["name"], pkg["versions"], pkg.get("retired"))
    return msg.SerializeToString()


def _checksum(release, field):
    value = release.get(field)
    if not isinstance(value, bytes) or len(value) != CHECKSUM_SIZE:
        # rebar3 pattern-matches both checksums on every release (hex-protocol.md §3.6)
        raise RegistryError(f"bad_input: {release.get('version')}: {field} must be {CHECKSUM_SIZE} raw bytes")
    return value


def encode_package(repository, name, releases):
    """Each release: version, inner_checksum, outer_checksum, dependencies, retired, published_at.

    Content rules of hexpm registry_builder.ex (hex-protocol.md §3.6): ``optional`` only when
    true, ``app`` only when it differs from the package, ``repository`` only when the caller gives
    one (it must be left out for the package's own repository), dependencies sorted by name."""
    msg = Package(name=name, repository=repository)
    for rel in releases:
        entry = msg.releases.add(version=rel["version"], inner_checksum=_checksum(rel, "inner_checksum"),
                                 outer_checksum=_checksum(rel, "outer_checksum"))
        deps = sorted(rel.get("dependencies") or (), key=lambda d: (d["package"].encode(), d.get("repository") or ""))
        for dep in deps:
            d = entry.dependencies.add(package=dep["package"], requirement=dep.get("requirement") or ">= 0.0.0")
            if dep.get("optional"):
                d.optional = True
            if dep.get("app") and dep["app"] != dep["package"]:
                d.app = dep["app"]
            if dep.get("repository"):
                d.repository = dep["repository"]
        retired = rel.get("retired")
        if retired:
            if retired.get("reason") not in RETIREMENT_REASONS:
                raise RegistryError(f"bad_input: {rel['version']}: unknown retirement reason {retired.get('reason')!r}")
            entry.retired.reason = RETIREMENT_REASONS.index(retired["reason"])
            if retired.get("message") is not None:
                entry.retired.message = retired["message"]
        if rel.get("published_at") is not None:
            _set_time(entry.published_at, rel["published_at"])
    return msg.SerializeToString()


def sign_and_gzip(payload, private_key):
    signed = Signed(payload=payload, signature=signing.sign(private_key, payload))
    # mtime=0: the same payload always gives the same file (and ETag). hex_core reads it with
    # zlib:gunzip (hex-protocol.md §3.2).
    return gzip.compress(signed.SerializeToString(), mtime=0)


# -- decoding -----------------------------------------------------------------------------------------

def _gunzip(data, max_size):
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)  # gzip wrapper only
    try:
        raw = inflater.decompress(bytes(data), max_size + 1)
    except (zlib.error, TypeError) as exc:
        raise RegistryError(f"not_gzip: registry file is not gzip ({exc})") from None
    if len(raw) > max_size:
        raise RegistryError(f"too_large: registry file inflates to more than {max_size} bytes")
    if not inflater.eof:
        raise RegistryError("not_gzip: registry file is truncated")
    if inflater.unused_data:
        raise RegistryError("not_gzip: trailing data after the gzip stream")
    return raw


def _parse(cls, data, what):
    msg = cls()
    try:
        msg.ParseFromString(bytes(data))
    except (DecodeError, TypeError, ValueError) as exc:
        raise RegistryError(f"bad_message: {what} does not decode ({exc})") from None
    # upb does not check proto2 required fields while parsing; hex_core's decoder does.
    if not msg.IsInitialized():
        missing = ", ".join(msg.FindInitializationErrors())
        raise RegistryError(f"bad_message: {what} lacks required fields ({missing})")
    return msg


def _text(value, what):
    # upb hands proto2 strings that are not UTF-8 back as bytes; they are not names we can match.
    if not isinstance(value, str):
        raise RegistryError(f"bad_message: {what} is not UTF-8")
    return value


def decode_signed(data, public_key=None, *, verify=True, max_size=MAX_FILE):
    """The payload of a served registry file. With ``verify`` (the default) a public key is
    required and an unsigned or wrongly signed file raises SignatureError; pass ``verify=False``
    to read a file without checking it (the client's HEX_UNSAFE_REGISTRY)."""
    signed = _parse(Signed, _gunzip(data, max_size), "Signed envelope")
    if verify:
        if public_key is None:
            raise SignatureError("bad_signature: no public key to verify the registry file with")
        if not signed.HasField("signature"):
            raise SignatureError("bad_signature: registry file is not signed")
        if not signing.verify(public_key, signed.payload, signed.signature):
            raise SignatureError("bad_signature: signature does not verify")
    return signed.payload


def _origin(msg, expected_repository, expected_name=None):
    # hex_core hex_registry.erl decode_*: {error, bad_repo_name} unless the payload names the
    # repository (and, for packages/NAME, the package) the client asked for (hex-protocol.md §3.5).
    repository = _text(msg.repository, "repository")
    if repository != expected_repository:
        raise RegistryError(f"bad_repo_name: registry says {repository!r}, expected {expected_repository!r}")
    if expected_name is not None and _text(msg.name, "name") != expected_name:
        raise RegistryError(f"bad_repo_name: package record is for {msg.name!r}, expected {expected_name!r}")


def _time(message):
    return EPOCH + datetime.timedelta(seconds=message.seconds, microseconds=message.nanos // 1000)


def decode_names(payload, expected_repository):
    """{"repository", "packages": [{"name", "updated_at": aware datetime | None}]}"""
    msg = _parse(Names, payload, "names")
    _origin(msg, expected_repository)
    return {"repository": msg.repository,
            "packages": [{"name": _text(p.name, "package name"),
                          "updated_at": _time(p.updated_at) if p.HasField("updated_at") else None}
                         for p in msg.packages]}


def decode_versions(payload, expected_repository):
    """{"repository", "packages": [{"name", "versions": [str], "retired": [int]}]}"""
    msg = _parse(Versions, payload, "versions")
    _origin(msg, expected_repository)
    return {"repository": msg.repository,
            "packages": [{"name": _text(p.name, "package name"),
                          "versions": [_text(v, "version") for v in p.versions], "retired": list(p.retired)}
                         for p in msg.packages]}


def _dependency(d):
    return {"package": _text(d.package, "dependency"), "requirement": _text(d.requirement, "requirement"),
            "optional": d.optional, "app": _text(d.app, "app") if d.HasField("app") else None,
            "repository": _text(d.repository, "repository") if d.HasField("repository") else None}


def _release(r):
    retired = None
    if r.HasField("retired"):
        retired = {"reason": RETIREMENT_REASONS[r.retired.reason],
                   "message": _text(r.retired.message, "message") if r.retired.HasField("message") else None}
    return {"version": _text(r.version, "version"), "inner_checksum": r.inner_checksum,
            "outer_checksum": r.outer_checksum,  # b"" when absent (optional in package.proto)
            "retired": retired, "published_at": _time(r.published_at) if r.HasField("published_at") else None,
            "dependencies": [_dependency(d) for d in r.dependencies]}


def decode_package(payload, expected_repository, expected_name=None):
    """{"name", "repository", "releases": [{"version", "inner_checksum", "outer_checksum",
    "retired": None | {"reason", "message"}, "published_at", "dependencies": [{"package",
    "requirement", "optional", "app", "repository"}]}]}"""
    msg = _parse(Package, payload, "package")
    _origin(msg, expected_repository, expected_name)
    return {"name": msg.name, "repository": msg.repository, "releases": [_release(r) for r in msg.releases]}


# -- incremental index building ------------------------------------------------------------------------
# Names and Versions are a repeated ``packages`` field (1) followed by ``repository`` (2). Protobuf
# lets the elements of a repeated field be written one after another, so a payload can be put
# together from entries encoded earlier and only changed packages re-encoded. The result is
# byte-identical to encode_names/encode_versions (the caller passes entries sorted by name).

def _varint(value):
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | 0x80 if value else byte)
        if not value:
            return bytes(out)


def _length_delimited(number, data):
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def encode_names_entry(name, updated_at):
    entry = NamesPackage()
    _fill_names_entry(entry, name, updated_at)
    return _length_delimited(1, entry.SerializeToString())


def encode_versions_entry(name, versions, retired):
    entry = VersionsPackage()
    _fill_versions_entry(entry, name, versions, retired)
    return _length_delimited(1, entry.SerializeToString())


def assemble_index(repository, entries):
    """A Names or Versions payload from entries already sorted by package name."""
    return b"".join(entries) + _length_delimited(2, repository.encode("utf-8"))
