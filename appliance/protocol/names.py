"""Hex package names: hexpm's format (lib/hexpm/repository/package.ex, ``^[a-z][a-z0-9_]*$``,
at least 2 characters) and Hexvault's upper bounds.

hexpm stores names and versions in varchar(255) columns. Hexvault also keeps every file name
derived from them (``registry/ORG/packages/NAME``, the mirror's ``tarballs/NAME-VERSION.tar``)
within one 255-byte path segment: 100 + 1 + 128 + 4 = 233.
"""

import re

MIN_NAME_LENGTH, MAX_NAME_LENGTH = 2, 100
MAX_VERSION_LENGTH = 128
# Used with fullmatch only: ``$`` would also match before a trailing newline.
PACKAGE_NAME_RE = re.compile(r"[a-z][a-z0-9_]*")


def is_package_name(name):
    """True for a name Hexvault stores and serves."""
    return (isinstance(name, str) and MIN_NAME_LENGTH <= len(name) <= MAX_NAME_LENGTH
            and PACKAGE_NAME_RE.fullmatch(name) is not None)


def shown(name, limit=40):
    """A name as safe to quote in a message: repr'd (newlines visible) and cut to ``limit``."""
    text = name if isinstance(name, str) else repr(name)
    return repr(text if len(text) <= limit else text[:limit - 3] + "...")
