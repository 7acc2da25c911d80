"""Parsers for setting values: each takes what the TOML file or a ``HEXVAULT_*`` variable holds
(a TOML value, or a string from the environment) and returns the value the Config keeps, or
raises ValueError with a sentence saying what was expected. appliance.config names one per
setting and adds the setting's name and origin to the error."""

import ipaddress
import json
import re
import urllib.parse


def boolean(value):
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def proxy_trust(value):
    """true/false, or the one address whose forwarding headers are believed."""
    try:
        return boolean(value)
    except ValueError:
        pass
    try:
        return str(ipaddress.ip_address(str(value).strip()))
    except ValueError:
        raise ValueError(f"expected true, false or the proxy's IP address, got {value!r}") from None


def integer(value):
    if isinstance(value, bool):
        raise ValueError("expected an integer")
    return int(value)


def number(value):
    if isinstance(value, bool):
        raise ValueError("expected a number")
    return float(value)


def size_or_auto(value):
    """A byte count, or "auto" (None) for the default rule of the setting that uses it."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return None
    number = integer(value)
    if number < 0:
        raise ValueError("expected a number of bytes or \"auto\"")
    return number


def positive_integer(value):
    number = integer(value)
    if number < 1:
        raise ValueError("expected a positive integer")
    return number


def database_url(value):
    text = string(value)
    if text and not text.startswith(("postgresql://", "postgres://")):
        raise ValueError("expected empty (SQLite in data_dir) or a postgresql:// URL")
    return text


def string(value):
    if not isinstance(value, str):
        raise ValueError("expected a string")
    return value


def base_url(value):
    """Empty (http://HOST:PORT) or an absolute http(s) URL: clients are told this URL, and one
    without a scheme would be read as a path."""
    value = string(value).strip()
    if not value:
        return value
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"expected an absolute URL such as https://hex.corp.example, got {value!r}")
    if parts.query or parts.fragment:
        raise ValueError("expected a URL without ? or #")
    return value


def log_format(value):
    value = string(value).strip().lower()
    if value not in ("text", "json"):
        raise ValueError(f"expected \"text\" or \"json\", got {value!r}")
    return value


def networks(value):
    """A list of networks (TOML array, or comma-separated in an environment variable) as a tuple
    of normalized CIDR strings."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        raise ValueError("expected a list of networks such as [\"127.0.0.1/32\", \"10.0.0.0/8\"]")
    networks = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"expected a network such as \"10.0.0.0/8\", got {item!r}")
        if item.strip():
            try:
                networks.append(str(ipaddress.ip_network(item.strip())))
            except ValueError as exc:  # host bits set, or not an address at all
                raise ValueError(f"{item.strip()!r} is not a network ({exc})") from None
    return tuple(networks)


def sha256_hex(value):
    value = string(value).strip().lower()
    if value and not re.fullmatch(r"[0-9a-f]{64}", value):
        raise ValueError("expected the SHA-256 of the token as 64 hexadecimal digits")
    return value


def strings(value):
    """A list of strings (TOML array, or comma-separated in an environment variable)."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) for i in items):
        raise ValueError("expected a list of strings")
    return tuple(i.strip() for i in items if i.strip())


def ldap_urls(value):
    urls = strings(value)
    for url in urls:
        if not re.fullmatch(r"ldaps?://[^/\s]+/?", url):
            raise ValueError(f"{url!r} is not an ldap://HOST[:PORT] or ldaps://HOST[:PORT] URL")
    return urls


def group_roles(value):
    """{group DN: "org:role" or a list of them} (a TOML table, or JSON in an environment variable)."""
    if isinstance(value, str):
        value = json.loads(value) if value.strip() else {}
    if not isinstance(value, dict):
        raise ValueError('expected a table such as {"cn=devs,ou=groups,dc=corp" = "acme:write"}')
    for group, grants in value.items():
        for grant in ([grants] if isinstance(grants, str) else grants if isinstance(grants, list) else [None]):
            org, _, role = grant.partition(":") if isinstance(grant, str) else ("", "", "")
            if not org or role not in ("read", "write", "admin"):
                raise ValueError(f"group {group!r}: expected \"ORG:read\", \"ORG:write\" or \"ORG:admin\", "
                                 f"got {grants!r}")
    # A tuple of (group, (grant, ...)) pairs: Config stays hashable.
    return tuple((group, (grants,) if isinstance(grants, str) else tuple(grants)) for group, grants in value.items())
