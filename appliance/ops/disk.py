"""Free space on the data directory's disk, and the reserve the disk guard keeps there.

One place for both, so /readyz, /metrics and the guard that refuses writes agree.
"""

import os

GiB = 1024 ** 3
AUTO_RESERVE_FRACTION = 0.05


def usage(path):
    """(free bytes an unprivileged process may use, size in bytes) of the file system at ``path``."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize


def free_bytes(config):
    return usage(config.data_path)[0]


def reserve_bytes(config):
    """The min_free_bytes setting; "auto" (None) is the larger of 1 GiB and 5% of the disk."""
    if config.min_free_bytes is not None:
        return config.min_free_bytes
    return max(GiB, int(usage(config.data_path)[1] * AUTO_RESERVE_FRACTION))
