"""The disk guard: bulk writes stop while the data directory's disk is below its reserve.

The reserve (setting ``min_free_bytes``; ``auto`` = the larger of 1 GiB and 5% of the disk) is
kept for what must go on working on a nearly full disk: the database (logins, keys, retire and
revert, which frees space), registry files and logs. Publishing, docs, drop-folder and mirror
imports and backups store megabytes each; they are refused before anything is written, with
errors.InsufficientStorage (HTTP 507) and a sentence the mix or rebar3 user reads. A disk that
fills anyway in the middle of a write (ENOSPC) gives the same error: every write is atomic (a
blob is a temp file renamed into place, the database a transaction), so nothing half-done is left.
/readyz and /metrics read ``usage`` too, so they report the numbers the guard acts on.
"""

import contextlib
import errno
import os
import typing

from appliance.errors import InsufficientStorage

GiB = 1024 ** 3
AUTO_MIN = GiB
AUTO_FRACTION = 0.05
_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


class DiskUsage(typing.NamedTuple):
    total: int
    free: int
    reserve: int  # 0 when the guard is off

    @property
    def used(self):
        return self.total - self.free

    @property
    def low(self):
        return self.reserve > 0 and self.free < self.reserve


def reserve_for(config, total):
    if config.min_free_bytes is not None:
        return config.min_free_bytes
    return max(AUTO_MIN, int(total * AUTO_FRACTION))


def usage(config, path=None):
    """Size and free space (what an unprivileged writer may use) of the disk holding ``path``,
    by default the data directory, with the reserve the guard keeps on it."""
    st = os.statvfs(path or config.data_path)
    total = st.f_blocks * st.f_frsize
    return DiskUsage(total, st.f_bavail * st.f_frsize, reserve_for(config, total))


def human(size):
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if abs(size) < 1024 or unit == "GiB":
            return f"{size} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def require_space(config, needed, what, path=None):
    """Refuse ``what`` (e.g. "publishing") unless ``needed`` bytes fit above the reserve."""
    disk = usage(config, path)
    if disk.reserve and disk.free - needed < disk.reserve:
        raise InsufficientStorage(
            f"{what} is paused: the server's disk is nearly full ({human(disk.free)} free, "
            f"{human(disk.reserve)} kept in reserve); nothing was stored. Ask the Hexvault administrator "
            "to free space, then try again.")
    return disk


def is_full_disk(exc):
    return isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS


@contextlib.contextmanager
def full_disk_refused():
    """Turn ENOSPC/EDQUOT from the writes inside into InsufficientStorage (usable as a decorator
    through ``contextlib.contextmanager``'s ContextDecorator)."""
    try:
        yield
    except OSError as exc:
        if not is_full_disk(exc):
            raise
        raise InsufficientStorage("the server's disk filled up during the write; nothing was stored. Ask the "
                                  "Hexvault administrator to free space, then try again.") from exc
