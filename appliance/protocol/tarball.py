"""Hex package tarballs (version 3): read and verify, or create (hexpm/specifications
package_tarball.md). Every failure is an InvalidTarball whose reason the client prints."""

import dataclasses
import gzip
import hashlib
import io
import posixpath
import tarfile
import zlib

from appliance.errors import InvalidTarball
from appliance.protocol.metadata import format_metadata, read_metadata

MAX_TARBALL_SIZE = 16 * 1024 * 1024
MAX_UNCOMPRESSED_SIZE = 128 * 1024 * 1024
MAX_FILES = 10_000
MAX_README = 512 * 1024
# hex_core's own caps on the small members.
MEMBER_LIMITS = {"VERSION": 32, "CHECKSUM": 128, "metadata.config": 1024 * 1024}
OUTER_MEMBERS = ("VERSION", "CHECKSUM", "metadata.config", "contents.tar.gz")
EPOCH_2000 = 946684800
README_NAMES = ("README.md", "README", "README.markdown", "README.txt")


@dataclasses.dataclass(frozen=True)
class Package:
    metadata: dict
    inner_checksum: bytes
    outer_checksum: bytes
    files: list
    readme: str | None
    size: int


class _CappedReader(io.RawIOBase):
    """Inflates a gzip stream lazily and fails once more than ``cap`` bytes come out, so a
    gzip bomb is refused without ever holding the inflated data."""

    def __init__(self, data, cap):
        self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._source = memoryview(data)
        self._pos = 0
        self._pending = b""
        self._buffer = b""
        self._cap = cap
        self.total = 0

    def readable(self):
        return True

    def readinto(self, target):
        while not self._buffer:
            if self._pending:
                src = self._pending
            elif self._inflater.eof:
                return 0
            elif self._pos < len(self._source):
                src = self._source[self._pos:self._pos + 65536]
                self._pos += len(src)
            else:
                raise InvalidTarball("contents.tar.gz is truncated")
            self._buffer = self._inflater.decompress(src, 1 << 20)
            self._pending = self._inflater.unconsumed_tail
            self.total += len(self._buffer)
            if self.total > self._cap:
                raise InvalidTarball(f"contents are larger than {self._cap} bytes uncompressed")
        n = min(len(target), len(self._buffer))
        target[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n


def _safe_name(name):
    if not name or "\x00" in name or "\\" in name or name.startswith("/"):
        return False
    normalized = posixpath.normpath(name)
    return not (normalized.startswith("../") or normalized == ".." or normalized.startswith("/"))


def _read_archive(data, cap, *, require_index=False):
    """Walk a gzipped tar in streaming mode; returns {name: bytes-or-None} for regular files
    (bytes only for README candidates) after checking every member's path and type."""
    files, readme = [], None
    reader = _CappedReader(data, cap)
    try:
        with tarfile.open(fileobj=io.BufferedReader(reader, 65536), mode="r|") as tar:
            for member in tar:
                if len(files) >= MAX_FILES:
                    raise InvalidTarball(f"more than {MAX_FILES} files")
                name = member.name
                if not _safe_name(name):
                    raise InvalidTarball(f"unsafe path in archive: {name!r}")
                if member.issym():
                    target = posixpath.normpath(posixpath.join(posixpath.dirname(name), member.linkname))
                    if member.linkname.startswith("/") or target.startswith("..") or not _safe_name(target):
                        raise InvalidTarball(f"symlink {name!r} points outside the package")
                    continue
                if member.isdir():
                    continue
                if not member.isfile():
                    raise InvalidTarball(f"unsupported file type in archive: {name!r}")
                if name == "hex_metadata.config":
                    raise InvalidTarball("hex_metadata.config is a reserved file name")
                files.append(name)
                if name in README_NAMES and member.size <= MAX_README:
                    fh = tar.extractfile(member)
                    readme = fh.read().decode("utf-8", "replace")
    except InvalidTarball:
        raise
    except (tarfile.TarError, zlib.error, EOFError, OSError, ValueError) as exc:
        raise InvalidTarball(f"archive is not a valid gzipped tar ({exc})") from None
    return files, readme


def _outer_members(data):
    try:
        tar = tarfile.open(fileobj=io.BytesIO(data), mode="r:")
        members = tar.getmembers()
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise InvalidTarball(f"not an uncompressed tar archive ({exc})") from None
    found = {}
    for member in members:
        if member.name not in OUTER_MEMBERS:
            raise InvalidTarball(f"unexpected file in package tarball: {member.name!r}")
        if member.name in found:
            raise InvalidTarball(f"duplicate file in package tarball: {member.name!r}")
        if not member.isfile():
            raise InvalidTarball(f"{member.name} is not a regular file")
        limit = MEMBER_LIMITS.get(member.name)
        if limit is not None and member.size > limit:
            raise InvalidTarball(f"{member.name} is larger than {limit} bytes")
        try:
            found[member.name] = tar.extractfile(member).read()
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise InvalidTarball(f"package tarball is truncated ({exc})") from None
        if len(found[member.name]) != member.size:
            raise InvalidTarball("package tarball is truncated")
    missing = [m for m in OUTER_MEMBERS if m not in found]
    if missing:
        raise InvalidTarball(f"missing files in package tarball: {', '.join(missing)}")
    return found


def _guess_build_tools(files):
    tools = []
    top = {f for f in files if "/" not in f}
    if "mix.exs" in top:
        tools.append("mix")
    if top & {"rebar.config", "rebar"}:
        tools.append("rebar3")
    if top & {"Makefile", "Makefile.win"}:
        tools.append("make")
    return tools


def read_package(data, *, max_size=MAX_TARBALL_SIZE, max_uncompressed_size=MAX_UNCOMPRESSED_SIZE):
    if len(data) > max_size:
        raise InvalidTarball(f"package tarball is {len(data)} bytes; the limit is {max_size}")
    if data[:2] == b"\x1f\x8b":
        raise InvalidTarball("package tarball must be an uncompressed tar, not gzip")
    members = _outer_members(data)
    if members["VERSION"].strip() != b"3":
        raise InvalidTarball(f"unsupported tarball version {members['VERSION'].strip()[:10]!r}; expected 3")
    stated = members["CHECKSUM"].strip()
    try:
        stated_bytes = bytes.fromhex(stated.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        stated_bytes = b""
    if len(stated_bytes) != 32:
        raise InvalidTarball("invalid inner checksum: CHECKSUM must be 64 hex characters")
    inner = hashlib.sha256(members["VERSION"] + members["metadata.config"] + members["contents.tar.gz"]).digest()
    if inner != stated_bytes:
        raise InvalidTarball(f"inner checksum mismatch: CHECKSUM says {stated.decode().upper()}, "
                             f"contents hash to {inner.hex().upper()}")
    metadata = read_metadata(members["metadata.config"])
    files, readme = _read_archive(members["contents.tar.gz"], max_uncompressed_size)
    if "build_tools" not in metadata:
        metadata["build_tools"] = _guess_build_tools(files)
    return Package(metadata=metadata, inner_checksum=inner, outer_checksum=hashlib.sha256(data).digest(),
                   files=files, readme=readme, size=len(data))


def read_docs(data, *, max_size=MAX_TARBALL_SIZE, max_uncompressed_size=MAX_UNCOMPRESSED_SIZE):
    if len(data) > max_size:
        raise InvalidTarball(f"docs tarball is {len(data)} bytes; the limit is {max_size}")
    files, _readme = _read_archive(data, max_uncompressed_size)
    if not files:
        raise InvalidTarball("docs tarball has no files")
    return files


def _tar_member(tar, name, data, mode=0o644):
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uid, info.gid = len(data), EPOCH_2000, mode, 0, 0
    tar.addfile(info, io.BytesIO(data))


def _gzipped_tar(files):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in sorted(files):
            _tar_member(tar, name, files[name])
    return gzip.compress(raw.getvalue(), mtime=0)


def create_package(metadata, files):
    version = b"3"
    meta = format_metadata(metadata)
    contents = _gzipped_tar(files)
    checksum = hashlib.sha256(version + meta + contents).hexdigest().upper().encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in zip(OUTER_MEMBERS, (version, checksum, meta, contents)):
            _tar_member(tar, name, data)
    return out.getvalue()


def create_docs(files):
    return _gzipped_tar(files)
