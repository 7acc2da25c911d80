"""Hex package tarballs (version 3) and docs tarballs: read and verify, or create.

Contract (hex-protocol.md §4.1, §4.5; hexpm/specifications package_tarball.md; hexpm/hex_core
src/hex_tarball.erl):

* ``read_package(data)`` accepts only an uncompressed tar holding exactly the regular files
  VERSION (``3``), CHECKSUM (64 hex digits = SHA-256 of VERSION ‖ metadata.config ‖
  contents.tar.gz), metadata.config (read by ``metadata.read_metadata``) and contents.tar.gz (a
  gzipped tar of the package files). It returns a ``Package`` or raises ``InvalidTarball``
  (``InvalidMetadata`` for metadata.config) with a reason the mix/rebar3 user can act on. No
  other exception escapes, whatever the bytes.
* Gzipped tars (contents.tar.gz, docs) are read as a stream: a capped inflater feeds tarfile's
  ``r|`` mode, so at most ``max_uncompressed_size`` bytes are ever inflated (the whole tar stream,
  headers included, which is what hex_core's ``tarball_max_uncompressed_size`` measures) and
  member data is never held except for a README of at most 512 KiB.
* Entries must have safe relative paths (no absolute paths, drive letters, ``..``, backslashes or
  NUL) and be regular files, directories or symlinks whose target stays inside the root; hard
  links, devices, FIFOs and sparse files are refused, as is anything written *through* a
  symlink. At most ``MAX_ENTRIES`` entries. A package must not ship ``hex_metadata.config``
  (the client writes that file; hexpm/hex hex.build.ex ``check_reserved_files``).
* ``create_package`` / ``create_docs`` build deterministic tarballs in hex_core's layout:
  VERSION, CHECKSUM (uppercase hex), metadata.config, contents.tar.gz; every entry mtime
  2000-01-01, uid/gid 0, mode 0644; gzip with hex_core's fixed header. They are not byte-equal
  to hex_core's (tar header details differ), but hex_core unpacks them with the same checksums
  (tests/test_hex_core.py); Hexvault itself never repacks what clients upload.
"""

import contextlib
import dataclasses
import hashlib
import io
import re
import struct
import tarfile
import zlib

from appliance.errors import InvalidTarball
from appliance.protocol.metadata import MAX_SIZE as MAX_METADATA_SIZE
from appliance.protocol.metadata import format_metadata, read_metadata

MAX_TARBALL_SIZE = 16 * 1024 * 1024  # hex_core default tarball_max_size
MAX_UNCOMPRESSED_SIZE = 128 * 1024 * 1024  # hex_core default tarball_max_uncompressed_size
MAX_VERSION_SIZE = 32  # hex_core caps VERSION at 32 bytes
MAX_CHECKSUM_SIZE = 128  # ... and CHECKSUM at 128 bytes
MAX_ENTRIES = 10_000  # our own cap on entries of any kind in contents.tar.gz / docs
MAX_README_SIZE = 512 * 1024
MAX_EXTENDED_HEADER = 64 * 1024  # a pax or GNU long-name block; real ones hold one path
MAX_EXTENDED_RUN = 4  # consecutive pax/GNU headers before a member (GNU tar uses 2 at most)

VERSION = b"3"
EPOCH_2000 = 946684800  # hex_core stamps every entry with 2000-01-01T00:00:00Z
OUTER_MEMBERS = ("VERSION", "CHECKSUM", "metadata.config", "contents.tar.gz")
README_NAMES = ("README.md", "README", "README.markdown")  # in order of preference
RESERVED_NAME = "hex_metadata.config"
BUILD_TOOL_FILES = {"mix.exs": "mix", "rebar.config": "rebar3", "rebar": "rebar3", "Makefile": "make",
                    "Makefile.win": "make"}  # hex_core's BUILD_TOOL_FILES

_GZIP_MAGIC = b"\x1f\x8b"
# hex_core's reproducible gzip header: deflate, no flags, mtime 0, no extra flags, OS 0.
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x00"
_HEX64 = re.compile(rb"[0-9A-Fa-f]{64}")
_DRIVE = re.compile(r"[A-Za-z]:")
_REGULAR = (tarfile.REGTYPE, tarfile.AREGTYPE)
_EXTENDED = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE, tarfile.GNUTYPE_LONGNAME,
             tarfile.GNUTYPE_LONGLINK)
_KINDS = {tarfile.LNKTYPE: "hard link", tarfile.CHRTYPE: "character device", tarfile.BLKTYPE: "block device",
          tarfile.FIFOTYPE: "FIFO", tarfile.CONTTYPE: "contiguous file"}


@dataclasses.dataclass(frozen=True)
class Package:
    metadata: dict  # read_metadata's dict, build_tools guessed if absent
    inner_checksum: bytes  # 32 raw bytes, the CHECKSUM member
    outer_checksum: bytes  # 32 raw bytes, SHA-256 of the whole tarball
    files: list  # regular files in contents.tar.gz, in archive order
    readme: str | None
    size: int


def _show(name):
    name = name if len(name) <= 200 else name[:197] + "..."
    return name if name.isprintable() else repr(name)


class _TarProblem(Exception):
    """Raised under tarfile; turned into InvalidTarball with the archive's label."""


class _GuardedTarInfo(tarfile.TarInfo):
    """tarfile reads pax and GNU long-name blocks and sparse maps into memory before it hands
    over the member, and chains of them recursively; refuse the oversized and the unusual first.
    Damaged headers become errors instead of a silent early end of the archive."""

    @classmethod
    def fromtarfile(cls, tar):
        try:
            return super().fromtarfile(tar)
        except tarfile.TruncatedHeaderError:
            raise _TarProblem("is truncated") from None
        except tarfile.InvalidHeaderError as exc:
            raise _TarProblem(f"has a damaged tar header ({exc})") from None

    def _proc_member(self, tar):
        if self.type == tarfile.GNUTYPE_SPARSE:
            raise _TarProblem("contains a sparse file, which is not supported")
        if self.type in _EXTENDED:
            run = getattr(tar, "_hexvault_extended_run", 0) + 1
            tar._hexvault_extended_run = run
            if self.size > MAX_EXTENDED_HEADER or self.size < 0 or run > MAX_EXTENDED_RUN:
                raise _TarProblem("has an oversized or repeated extended (pax/GNU) header")
        else:
            tar._hexvault_extended_run = 0
        return super()._proc_member(tar)

    def _proc_gnusparse_00(self, *args):
        raise _TarProblem("contains a sparse file, which is not supported")

    _proc_gnusparse_01 = _proc_gnusparse_10 = _proc_gnusparse_00


def _open_stream(fileobj):
    return tarfile.open(fileobj=fileobj, mode="r|", tarinfo=_GuardedTarInfo, encoding="utf-8", errors="strict")


@contextlib.contextmanager
def _tar_errors(label):
    """Every failure while reading ``label`` becomes an InvalidTarball that names it."""
    try:
        yield
    except InvalidTarball:
        raise
    except _TarProblem as exc:
        raise InvalidTarball(f"{label} {exc}") from None
    except UnicodeError:
        raise InvalidTarball(f"{label} has a file name that is not valid UTF-8") from None
    except tarfile.ReadError as exc:
        if "unexpected end of data" in str(exc):
            raise InvalidTarball(f"{label} is truncated") from None
        raise InvalidTarball(f"{label} is not a valid tar archive ({exc})") from None
    except zlib.error as exc:
        raise InvalidTarball(f"{label} has corrupt gzip data ({exc})") from None
    except (tarfile.TarError, EOFError, OSError, ValueError, OverflowError, RecursionError) as exc:
        raise InvalidTarball(f"{label} is damaged ({exc})") from None


class _Inflater:
    """A file-like reader over a gzip stream that inflates only what is asked for and fails once
    more than ``cap`` bytes have come out, so a gzip bomb costs at most ``cap`` bytes of work and
    never that much memory."""

    CHUNK = 64 * 1024

    def __init__(self, data, cap, label):
        self._data, self._pos = memoryview(data), 0
        self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)  # gzip framing, CRC checked at the end
        self._cap, self._label = cap, label
        self.total = 0

    def read(self, size=-1):
        size = size if size and size > 0 else self.CHUNK
        while not self._inflater.eof:
            source = self._inflater.unconsumed_tail
            if not source:
                if self._pos >= len(self._data):
                    raise InvalidTarball(f"{self._label} is truncated")
                source = self._data[self._pos:self._pos + self.CHUNK]
                self._pos += len(source)
            out = self._inflater.decompress(source, size)
            if out:
                self.total += len(out)
                if self.total > self._cap:
                    raise InvalidTarball(f"{self._label} is larger than {self._cap} bytes uncompressed")
                return out
        if self._inflater.unused_data or self._pos < len(self._data):
            raise InvalidTarball(f"{self._label} has trailing data after the gzip stream")
        return b""

    def drain(self):
        """Inflate to the end (still capped) so the gzip CRC and length are verified."""
        while self.read(1024 * 1024):
            pass


def _clean_path(name, label):
    """The normalized relative path of an entry ("" for the root itself), or InvalidTarball."""
    if not name or "\x00" in name or "\\" in name or name.startswith("/") or _DRIVE.match(name):
        raise InvalidTarball(f"unsafe path in {label}: {_show(name)}")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidTarball(f"unsafe path in {label}: {_show(name)}")
    return "/".join(parts)


def _check_symlink(name, target, label):
    """Relative, and resolving inside the root. '..' may only lead the target: after a step down
    through another symlink, '..' would climb from wherever that symlink points."""
    escape = InvalidTarball(f"symlink {_show(name)} in {label} points outside the package: {_show(target)}")
    if not target or "\x00" in target or "\\" in target or target.startswith("/") or _DRIVE.match(target):
        raise escape
    parts = [p for p in target.split("/") if p not in ("", ".")]
    ups = 0
    while ups < len(parts) and parts[ups] == "..":
        ups += 1
    if ".." in parts[ups:] or ups > name.count("/"):
        raise escape


def _scan(data, label, cap, *, package):
    """Walk a gzipped tar; returns (regular file names, README text or None)."""
    if not data.startswith(_GZIP_MAGIC):
        raise InvalidTarball(f"{label} is not gzip-compressed")
    reader = _Inflater(data, cap, label)
    files, seen, entries, symlinks, readmes = [], set(), [], set(), {}
    budget = cap
    with _tar_errors(label):
        with _open_stream(reader) as tar:
            for member in tar:
                if len(entries) >= MAX_ENTRIES:
                    raise InvalidTarball(f"{label} has more than {MAX_ENTRIES} entries")
                name = _clean_path(member.name, label)
                if package and name == RESERVED_NAME:
                    raise InvalidTarball(f"{label} must not contain {RESERVED_NAME}; the client writes that file")
                if not name and member.type != tarfile.DIRTYPE:
                    raise InvalidTarball(f"unsafe path in {label}: {_show(member.name)}")
                if member.type in _REGULAR:
                    # Refuse on the header's word, before a byte of the data is inflated.
                    if not 0 <= member.size <= budget:
                        raise InvalidTarball(f"{label} is larger than {cap} bytes uncompressed "
                                             f"({_show(name)} alone is {member.size} bytes)")
                    budget -= member.size
                    if name not in seen:
                        seen.add(name)
                        files.append(name)
                    if package and name in README_NAMES and member.size <= MAX_README_SIZE:
                        readmes[name] = tar.extractfile(member).read()
                elif member.type == tarfile.SYMTYPE:
                    _check_symlink(name, member.linkname, label)
                    symlinks.add(name)
                elif member.type != tarfile.DIRTYPE:
                    kind = _KINDS.get(member.type, f"entry of type {member.type!r}")
                    raise InvalidTarball(f"{label} contains a {kind} ({_show(name)}); only regular files, "
                                         "directories and relative symlinks are allowed")
                entries.append(name)
            reader.drain()
    for name in entries:  # order-independent: nothing may be written through a symlink
        parts = name.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in symlinks:
                raise InvalidTarball(f"unsafe path in {label}: {_show(name)} lies under a symlink")
    readme = next((readmes[n] for n in README_NAMES if n in readmes), None)
    return files, (readme.decode("utf-8", "replace") if readme is not None else None)


def _read_outer(data):
    """{member name: bytes} for the four members of a package tarball."""
    limits = {"VERSION": MAX_VERSION_SIZE, "CHECKSUM": MAX_CHECKSUM_SIZE, "metadata.config": MAX_METADATA_SIZE,
              "contents.tar.gz": len(data)}
    found = {}
    with _tar_errors("package tarball"):
        with _open_stream(io.BytesIO(data)) as tar:
            for member in tar:
                name = member.name
                if name not in limits:
                    raise InvalidTarball(f"unexpected file in package tarball: {_show(name)} "
                                         f"(expected only {', '.join(OUTER_MEMBERS)})")
                if name in found:
                    raise InvalidTarball(f"duplicate file in package tarball: {name}")
                if member.type not in _REGULAR:
                    raise InvalidTarball(f"{name} in package tarball is not a regular file")
                if not 0 <= member.size <= limits[name]:
                    raise InvalidTarball(f"{name} is {member.size} bytes; the limit is {limits[name]}")
                found[name] = tar.extractfile(member).read()
                if len(found[name]) != member.size:
                    raise InvalidTarball("package tarball is truncated")
    missing = [m for m in OUTER_MEMBERS if m not in found]
    if missing:
        raise InvalidTarball(f"package tarball is missing {', '.join(missing)}")
    return found


def _guess_build_tools(metadata, files):
    """hex_core guesses from the top-level entries of metadata "files"; without that key we
    use the files actually shipped (hex_core would leave build_tools out)."""
    names = metadata["files"] if isinstance(metadata.get("files"), list) else files
    top = {n[2:] if n.startswith("./") else n for n in names}
    return sorted({tool for file, tool in BUILD_TOOL_FILES.items() if file in top})


def _check_size(data, max_size, what):
    if not isinstance(data, bytes):
        data = bytes(data)
    if len(data) > max_size:
        raise InvalidTarball(f"{what} is {len(data)} bytes; the limit is {max_size}")
    if not data:
        raise InvalidTarball(f"{what} is empty")
    return data


def read_package(data, *, max_size=MAX_TARBALL_SIZE, max_uncompressed_size=MAX_UNCOMPRESSED_SIZE):
    """Verify a version-3 package tarball and return what it holds (see module docstring)."""
    data = _check_size(data, max_size, "package tarball")
    if data.startswith(_GZIP_MAGIC):
        raise InvalidTarball("package tarball must be an uncompressed tar, but this one is gzip-compressed")
    members = _read_outer(data)
    version = members["VERSION"]
    # hex_core (and so every client that fetches the package) wants exactly b"3": no whitespace.
    if version != VERSION:
        raise InvalidTarball(f"unsupported tarball version {_show(version.decode('latin-1'))}; expected 3")
    stated = members["CHECKSUM"]
    if not _HEX64.fullmatch(stated):
        raise InvalidTarball("invalid inner checksum: CHECKSUM must be 64 hex characters")
    inner = hashlib.sha256(version + members["metadata.config"] + members["contents.tar.gz"]).digest()
    if bytes.fromhex(stated.decode("ascii")) != inner:
        raise InvalidTarball(f"inner checksum mismatch: CHECKSUM says {stated.decode('ascii').upper()}, "
                             f"contents hash to {inner.hex().upper()}")
    metadata = read_metadata(members["metadata.config"])
    files, readme = _scan(members["contents.tar.gz"], "contents.tar.gz", max_uncompressed_size, package=True)
    if "build_tools" not in metadata:
        metadata["build_tools"] = _guess_build_tools(metadata, files)
    return Package(metadata=metadata, inner_checksum=inner, outer_checksum=hashlib.sha256(data).digest(),
                   files=files, readme=readme, size=len(data))


def read_docs(data, *, max_size=MAX_TARBALL_SIZE, max_uncompressed_size=MAX_UNCOMPRESSED_SIZE):
    """Validate a docs tarball (gzipped tar, same path and bomb rules) and return its file names.
    At least one file is required; index.html is not (Hex clients expect one, but ex_doc and
    edoc always write it, and its absence harms nobody but the reader)."""
    data = _check_size(data, max_size, "docs tarball")
    files, _readme = _scan(data, "docs tarball", max_uncompressed_size, package=False)
    if not files:
        raise InvalidTarball("docs tarball contains no files")
    return files


# -- creation -----------------------------------------------------------------------------------

def _tar(entries):
    """An uncompressed tar of (name, bytes) in the given order, stamped like hex_core's."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8") as tar:
        for name, content in entries:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode, info.uid, info.gid = len(content), EPOCH_2000, 0o644, 0, 0
            tar.addfile(info, io.BytesIO(content))
    return out.getvalue()


def _gzip(raw):
    """hex_core's reproducible gzip: fixed header, raw deflate at the default level, CRC, size."""
    deflater = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15, 8)
    body = deflater.compress(raw) + deflater.flush()
    return _GZIP_HEADER + body + struct.pack("<II", zlib.crc32(raw), len(raw) & 0xFFFFFFFF)


def create_package(metadata, files):
    """A version-3 package tarball for ``metadata`` (a dict) and ``files`` ({path: bytes}).
    Paths are written as given (sorted), unchecked, so tests can build hostile tarballs too."""
    meta = format_metadata(metadata)
    contents = _gzip(_tar(sorted(files.items())))
    checksum = hashlib.sha256(VERSION + meta + contents).hexdigest().upper().encode("ascii")
    return _tar(zip(OUTER_MEMBERS, (VERSION, checksum, meta, contents)))


def create_docs(files):
    """A docs tarball (gzipped tar) of ``files`` ({path: bytes}), deterministic."""
    return _gzip(_tar(sorted(files.items())))
