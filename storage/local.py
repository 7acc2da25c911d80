"""Local-disk blob store: atomic writes (temp file, fsync, rename, fsync dir) and safe keys."""

import collections
import hashlib
import io
import os
import re
import tempfile
import threading
from pathlib import Path

from storage import BlobInfo, BlobNotFound, BlobStat, InvalidKey

_SEGMENT = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9._+-]{0,254}")  # fullmatch; one file name is at most 255 bytes
_TEMP_PREFIX = ".tmp-"
CACHE_BYTES = 32 * 1024 * 1024  # memory for recently read small blobs and the ETags of large ones
CACHE_FILE_BYTES = 256 * 1024  # registry files and most tarballs are far smaller
_ENTRY_OVERHEAD = 256  # rough bytes per cache entry beyond the data: key, stamp, tuple, dict slot


def check_key(key):
    """Return the key's segments or raise InvalidKey; no '..', no absolute paths, no temp names."""
    if not isinstance(key, str) or not key or len(key) > 1024:
        raise InvalidKey(f"invalid blob key {key!r}")
    parts = key.split("/")
    for part in parts:
        if not _SEGMENT.fullmatch(part) or part in (".", ".."):
            raise InvalidKey(f"invalid blob key {key!r}")
    return parts


def _stamp(st):
    # ctime too: file systems with coarse timestamps can give a replacement that reuses a freed
    # inode the same mtime and size; a rename also moves ctime.
    return st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size


class _ReadCache:
    """Least recently used (stamp, BlobInfo, bytes or None) per key, bounded in bytes.

    ETags are hashes of the bytes; keeping them (and small blobs whole) per file stamp makes a
    repeated GET or a 304 cost one stat instead of an open, a read and a hash.
    """

    def __init__(self, budget):
        self._budget = budget
        self._used = 0
        self._entries = collections.OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _cost(data):
        return _ENTRY_OVERHEAD + (len(data) if data is not None else 0)

    def get(self, key, stamp):
        entry = self._entries.get(key)
        if entry is None or entry[0] != stamp:
            return None
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
        return entry[1], entry[2]

    def put(self, key, stamp, info, data):
        cost = self._cost(data)
        if cost > self._budget:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._used -= self._cost(old[2])
            self._entries[key] = (stamp, info, data)
            self._used += cost
            while self._used > self._budget:
                _key, evicted = self._entries.popitem(last=False)
                self._used -= self._cost(evicted[2])

    def drop(self, key):
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._used -= self._cost(old[2])


class LocalStore:
    def __init__(self, root, cache_bytes=CACHE_BYTES):
        self.root = Path(root)
        self._cache = _ReadCache(cache_bytes)

    def _path(self, key):
        return self.root.joinpath(*check_key(key))

    def put(self, key, data):
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=_TEMP_PREFIX, dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o640)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        self._cache.drop(key)  # this process never trusts a stamp across its own writes
        _fsync_dir(path.parent)

    def get(self, key):
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise BlobNotFound(key) from None

    def open(self, key):
        try:
            return open(self._path(key), "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise BlobNotFound(key) from None

    def info(self, key):
        fh, info = self.open_with_info(key)
        fh.close()
        return info

    def open_with_info(self, key):
        """A handle and the size and ETag of exactly the bytes it will read.

        Small blobs come from memory when a stat of the path shows the same file (inode, mtime,
        size) as when they were cached; a put always makes a new inode, so a replaced blob is
        never served stale. Otherwise the size comes from fstat of the opened handle, not stat
        of the path, so a concurrent put can't make length and ETag describe another version.
        """
        path = self._path(key)
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            raise BlobNotFound(key) from None
        hit = self._cache.get(key, _stamp(st))
        if hit is not None and hit[1] is not None:
            return io.BytesIO(hit[1]), hit[0]
        try:
            fh = open(path, "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise BlobNotFound(key) from None
        stamp = _stamp(os.fstat(fh.fileno()))
        hit = self._cache.get(key, stamp)
        if hit is not None:
            info, data = hit
            if data is None:  # a large blob: its ETag is cached, its bytes are read from this handle
                return fh, info
            fh.close()
            return io.BytesIO(data), info
        if stamp[-1] <= CACHE_FILE_BYTES:
            with fh:
                data = fh.read()
            info = BlobInfo(len(data), f'"{hashlib.sha256(data).hexdigest()}"', stamp[2] // 10**9)
            self._cache.put(key, stamp, info, data)
            return io.BytesIO(data), info
        digest = hashlib.sha256()
        for chunk in iter(lambda: fh.read(1 << 16), b""):
            digest.update(chunk)
        fh.seek(0)
        info = BlobInfo(stamp[-1], f'"{digest.hexdigest()}"', stamp[2] // 10**9)
        self._cache.put(key, stamp, info, None)
        return fh, info

    def stat(self, key):
        """Size and modification time without opening the blob (no hashing, unlike info)."""
        try:
            st = os.stat(self._path(key))
        except (FileNotFoundError, NotADirectoryError):
            raise BlobNotFound(key) from None
        return BlobStat(st.st_size, st.st_mtime)

    def exists(self, key):
        return self._path(key).is_file()

    def delete(self, key):
        path = self._path(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        self._cache.drop(key)
        _fsync_dir(path.parent)

    def list(self, prefix=""):
        base = self.root.joinpath(*check_key(prefix)) if prefix else self.root
        if not base.is_dir():
            return
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            for name in sorted(filenames):
                if name.startswith(_TEMP_PREFIX):
                    continue
                full = Path(dirpath, name)
                yield full.relative_to(self.root).as_posix()

    def remove_temp_files(self):
        """Delete temp files a crash left behind; returns how many. Called at start-up."""
        removed = 0
        if not self.root.is_dir():
            return removed
        for dirpath, _dirnames, filenames in os.walk(self.root):
            for name in filenames:
                if name.startswith(_TEMP_PREFIX):
                    os.unlink(os.path.join(dirpath, name))
                    removed += 1
        return removed


def _fsync_dir(path):
    # The rename is durable only once the directory entry is on disk.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
