"""Blob storage behind a tiny interface.

A blob is an immutable-until-replaced byte string under a key such as
``registry/acme/packages/foo``. Keys are ``/``-separated, made of ``[A-Za-z0-9._+-]`` segments;
anything else is refused before it reaches a file system. Every ``put`` is atomic: a reader
sees the old bytes or the new ones, never a mix, and a crash at any moment leaves one of the two.

This package is a leaf: it imports nothing from ``appliance`` or ``webui``.
"""

import typing


class BlobNotFound(KeyError):
    """No blob is stored under that key."""


class InvalidKey(ValueError):
    """A key that could escape the store or is not in the allowed alphabet."""


class BlobInfo(typing.NamedTuple):
    size: int
    etag: str  # quoted strong ETag of the bytes, ready for an HTTP header
    mtime: int = 0  # seconds; with size, what a static file server (nginx) makes its ETag from


def static_etag(info):
    """The ETag nginx gives a file it serves itself (``"<mtime hex>-<size hex>"``), so a file the
    TLS front serves from disk and the same file served by Hexvault carry the same ETag."""
    return f'"{info.mtime:x}-{info.size:x}"'


class BlobStat(typing.NamedTuple):
    size: int
    modified: float  # seconds since the epoch of the last put; garbage collection spares young blobs


class BlobStore(typing.Protocol):
    def put(self, key: str, data: bytes) -> None: ...

    def get(self, key: str) -> bytes: ...

    def open(self, key: str) -> typing.BinaryIO: ...

    def info(self, key: str) -> BlobInfo: ...

    def open_with_info(self, key: str) -> tuple[typing.BinaryIO, BlobInfo]: ...

    def stat(self, key: str) -> BlobStat: ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None: ...

    def list(self, prefix: str = "") -> typing.Iterator[str]: ...


def open_store(root, cache_bytes=None) -> BlobStore:
    """The store for a data directory's blob folder (local disk; S3 would plug in here).
    ``cache_bytes`` bounds the memory kept for recently read small blobs."""
    from storage.local import CACHE_BYTES, LocalStore

    return LocalStore(root, CACHE_BYTES if cache_bytes is None else cache_bytes)
