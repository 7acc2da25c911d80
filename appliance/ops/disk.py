"""Free space on the data directory's disk and the reserve the disk guard keeps there
(setting ``min_free_bytes``; ``auto`` = the larger of 1 GiB and 5% of the disk).

A subset of the disk guard's module (hardening-a), so /readyz and /metrics read the same
numbers the guard acts on.
"""

import os
import typing

GiB = 1024 ** 3
AUTO_MIN = GiB
AUTO_FRACTION = 0.05


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
