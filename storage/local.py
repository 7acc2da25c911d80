"""Local-disk blob store: atomic writes (temp file, fsync, rename, fsync dir) and safe keys."""

import hashlib
import os
import re
import tempfile
import threading
from pathlib import Path

from storage import BlobInfo, BlobNotFound, InvalidKey

_SEGMENT = re.compile(r"^[A-Za-z0-9_+-][A-Za-z0-9._+-]*$")
_TEMP_PREFIX = ".tmp-"


def check_key(key):
    """Return the key's segments or raise InvalidKey; no '..', no absolute paths, no temp names."""
    if not isinstance(key, str) or not key or len(key) > 1024:
        raise InvalidKey(f"invalid blob key {key!r}")
    parts = key.split("/")
    for part in parts:
        if not _SEGMENT.match(part) or part in (".", ".."):
            raise InvalidKey(f"invalid blob key {key!r}")
    return parts


class LocalStore:
    def __init__(self, root):
        self.root = Path(root)
        # ETags are hashes of the bytes, cached per (inode, mtime, size): a replaced file is a new
        # inode, so a stale entry can never be served, and a 304 costs one stat, not a read.
        self._etags = {}
        self._etag_lock = threading.Lock()

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
        """An open handle and the size and ETag of exactly the bytes it will read.

        Taken with fstat on the handle, not stat on the path: a concurrent put replaces the
        path's file, never an opened one, so length and ETag can't describe another version.
        """
        try:
            fh = open(self._path(key), "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise BlobNotFound(key) from None
        st = os.fstat(fh.fileno())
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        cached = self._etags.get(key)
        if cached and cached[0] == stamp:
            return fh, cached[1]
        digest = hashlib.sha256()
        for chunk in iter(lambda: fh.read(1 << 16), b""):
            digest.update(chunk)
        fh.seek(0)
        info = BlobInfo(st.st_size, f'"{digest.hexdigest()}"')
        with self._etag_lock:
            self._etags[key] = (stamp, info)
        return fh, info

    def exists(self, key):
        return self._path(key).is_file()

    def delete(self, key):
        path = self._path(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        self._etags.pop(key, None)
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
