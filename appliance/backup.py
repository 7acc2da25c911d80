"""Online backup and restore of a data directory.

``backup`` may run while the server serves and publishes. The database is copied as a consistent
snapshot (``db.dump``: SQLite's online backup API into ``hexvault.db``, or pg_dump's custom
format into ``hexvault.pgdump`` for PostgreSQL, using Debian's postgresql-client); then every
tarball and docs blob the snapshot refers to is copied (blobs are content-addressed and never change once written), with the signing keys,
the app secret and the config file, and a manifest of SHA-256 sums. It writes into
``DEST.partial`` and renames at the end, so a DEST that exists is a complete backup. DEST and
everything in it are owner-only (directories 0700, files 0600) whatever the umask: a backup holds
the database, private tarballs, the signing keys and the app secret.

The hex.pm mirror's files (``mirror/``) are copied too, records before tarballs: they are
hex.pm's signatures and cannot be rebuilt. Organization registry files are not copied:
``restore`` rebuilds them from the restored database with the restored signing key. Signing
(PKCS#1 v1.5) and gzip (mtime 0) are deterministic, so the rebuilt files are byte-for-byte what
the server served for that database state. ``restore`` puts the database back the way it was
dumped (a SQLite file, or pg_restore into the empty database ``database_url`` names).

What the manifest proves: unsigned, that no file was damaged or lost since the backup was made
(bit rot, a truncated copy), and that no file was added. It does not prove who made it: whoever
can write the backup can change a file and recompute its sum. ``backup --sign KEYFILE`` adds
``manifest.hmac``, an HMAC-SHA256 of the manifest under a key kept outside the data directory and
the backup; ``restore --verify KEYFILE`` then refuses any backup not written by a holder of that
key. Neither proves the backup is the newest one (an older signed backup still verifies; its
``created`` time is printed), nor keeps it secret: backups are not encrypted.
"""

import datetime
import hashlib
import hmac
import json
import os
import shutil
from pathlib import Path

from appliance import db
from appliance.version import __version__
from appliance.db import database
from appliance.dbbackends import SQLITE_FULL
from appliance.errors import HexvaultError, InsufficientStorage
from appliance.ops import disk
from appliance.models import Release
from appliance.packages import docs_key, tarball_key

MANIFEST = "manifest.json"
MANIFEST_MAC = "manifest.hmac"
MIN_SIGN_KEY = 32  # bytes of key file; `openssl rand -hex 32` gives 64
MIRROR_PREFIX = "mirror"


class BackupError(HexvaultError):
    """A backup that cannot be written or a restore source that is incomplete or altered."""

    status = 500


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_tree(root):
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            with open(os.path.join(dirpath, name), "rb") as fh:
                os.fsync(fh.fileno())
        fd = os.open(dirpath, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)


def _make_private(root):
    """Owner-only modes for root and everything under it. The work directory is 0700 from the
    start, so nothing in it is reachable by others before this runs."""
    for dirpath, dirs, files in os.walk(root):
        os.chmod(dirpath, 0o700)
        for name in files:
            os.chmod(os.path.join(dirpath, name), 0o600)


def _referenced_blobs():
    """Blob keys of every tarball and docs upload the bound database refers to."""
    tarballs = [c for (c,) in Release.select(Release.outer_checksum).distinct().tuples()]
    docs = [c for (c,) in Release.select(Release.docs_checksum).where(Release.docs_checksum.is_null(False))
            .distinct().tuples()]
    return [tarball_key(c) for c in tarballs] + [docs_key(c) for c in docs]


def _mirror_blobs(store):
    """Mirror files in a safe copy order: records before tarballs. A record is stored only after
    the tarballs it names, so every record copied has its tarballs listed by the later walk."""
    def is_tarball(key):
        return "/tarballs/" in key

    yield from [k for k in store.list(MIRROR_PREFIX) if not is_tarball(k)]
    # Listed only now, after the records above were copied (the caller copies as it iterates).
    yield from [k for k in store.list(MIRROR_PREFIX) if is_tarball(k)]


def _copy_blob(store, key, root):
    with store.open(key) as src:
        out = root / key
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "wb") as dst:
            shutil.copyfileobj(src, dst)


def read_sign_key(path, config, dest=None):
    """The HMAC key in the file at ``path``. It must live outside the data directory (a backup
    copies that) and outside the backup, or it proves nothing."""
    where = Path(path).resolve()
    for inside in [config.data_path] + ([Path(dest)] if dest else []):
        if where.is_relative_to(Path(inside).resolve()):
            raise BackupError(f"the signing key {path} is inside {inside}; keep it outside the data directory "
                              "and the backups, or anyone who can change a backup can re-sign it")
    try:
        key = where.read_bytes().strip()
    except OSError as exc:
        raise BackupError(f"cannot read the signing key {path} ({exc.strerror})") from None
    if len(key) < MIN_SIGN_KEY:
        raise BackupError(f"the signing key {path} is shorter than {MIN_SIGN_KEY} bytes; make one with "
                          "`openssl rand -hex 32 > FILE`")
    return key


def _mac(key, manifest_bytes):
    return hmac.new(key, manifest_bytes, hashlib.sha256).hexdigest()


def _tree_size(root):
    return sum(os.path.getsize(os.path.join(d, n)) for d, _dirs, names in os.walk(root) for n in names)


def backup(rt, dest, sign_key=None):
    """Write a consistent backup of rt's data directory to ``dest``; returns the manifest.
    ``sign_key`` (bytes, see read_sign_key) adds an HMAC of the manifest."""
    dest = Path(dest)
    if dest.exists():
        raise BackupError(f"{dest} already exists; choose a new directory for each backup")
    config = rt.config
    # Refused before anything is written; the estimate (the whole database and blob store) is
    # an upper bound. The target's own disk keeps the same reserve as the data directory's.
    existing = next(p for p in [dest.parent.resolve(), *dest.parent.resolve().parents] if p.exists())
    needed = _tree_size(config.blob_path) + sum(
        os.path.getsize(p) for p in (config.database_path, Path(f"{config.database_path}-wal")) if p.exists())
    disk.require_space(config, needed, "the backup", path=existing)
    work = dest.with_name(dest.name + ".partial")
    try:
        return _write_backup(rt, dest, work, sign_key)
    except BaseException as exc:
        shutil.rmtree(work, ignore_errors=True)  # never leave half a backup filling the disk
        if disk.is_full_disk(exc) or (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF == SQLITE_FULL:
            raise InsufficientStorage(f"the disk holding {dest.parent} filled up during the backup; nothing was "
                                      "kept. Free space there, then run the backup again.") from exc
        raise


def _write_backup(rt, dest, work, sign_key):
    config = rt.config
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(mode=0o700, parents=True)
    os.chmod(work, 0o700)  # mkdir's mode is masked by the umask; this one must hold exactly
    (work / "blobs").mkdir()

    # The blobs to copy are those the dumped state refers to, read from that very state.
    with database.connection_context():
        referenced = db.dump(work / f"hexvault{db.dump_suffix()}", read=_referenced_blobs)

    missing = []
    for key in referenced:
        try:
            _copy_blob(rt.store, key, work / "blobs")
        except KeyError:
            missing.append(key)
    for key in _mirror_blobs(rt.store):
        _copy_blob(rt.store, key, work / "blobs")  # hex.pm's signed files cannot be rebuilt
    if missing:
        raise BackupError(f"{len(missing)} stored files named by the database are missing "
                          f"(first: {missing[0]}); run `hexvault check`")
    shutil.copytree(config.keys_path, work / "keys")
    shutil.copy2(config.data_path / "secret_key", work / "secret_key")
    if config.source:
        shutil.copy2(config.source, work / "hexvault.toml")

    files = {}
    for dirpath, _dirs, names in os.walk(work):
        for name in names:
            path = Path(dirpath) / name
            files[path.relative_to(work).as_posix()] = _sha256(path)
    created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    manifest = {"hexvault": __version__, "created": created, "files": files}
    manifest_bytes = json.dumps(manifest, indent=1, sort_keys=True).encode()
    (work / MANIFEST).write_bytes(manifest_bytes)
    if sign_key is not None:
        (work / MANIFEST_MAC).write_text(_mac(sign_key, manifest_bytes) + "\n")
    _make_private(work)
    _fsync_tree(work)
    os.replace(work, dest)
    return manifest


def verify(src, sign_key=None):
    """The manifest of a backup directory that holds exactly the files it lists, each matching
    its SHA-256; with ``sign_key``, only if the manifest carries that key's HMAC."""
    src = Path(src)
    try:
        manifest_bytes = (src / MANIFEST).read_bytes()
        manifest = json.loads(manifest_bytes)
        files = manifest["files"]
        if not isinstance(files, dict):
            raise ValueError("no file list")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BackupError(f"{src} is not a Hexvault backup ({exc})") from None
    if sign_key is not None:
        try:
            recorded = (src / MANIFEST_MAC).read_text().strip()
        except OSError:
            raise BackupError(f"{src} is not signed ({MANIFEST_MAC} is missing); it cannot be verified") from None
        if not hmac.compare_digest(recorded, _mac(sign_key, manifest_bytes)):
            raise BackupError(f"the manifest of {src} is not signed with this key: the backup was altered, or "
                              "signed with another key")
    present = {p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file()} - {MANIFEST, MANIFEST_MAC}
    for name in sorted(present - set(files)):
        raise BackupError(f"backup file {name} is not in the manifest; the backup was altered")
    for name, digest in files.items():
        path = src / name
        if ".." in Path(name).parts or not path.is_file() or _sha256(path) != digest:
            raise BackupError(f"backup file {name} is missing or altered")
    return manifest


def restore(src, config, sign_key=None):
    """Restore a verified backup into config's (uninitialized) data directory; returns its manifest."""
    from appliance.runtime import is_initialized

    src = Path(src)
    if is_initialized(config) or (config.data_path.exists() and any(config.data_path.iterdir())):
        raise BackupError(f"{config.data_dir} is not empty; restore only into a new data directory")
    manifest = verify(src, sign_key)
    data = config.data_path
    data.mkdir(parents=True, exist_ok=True, mode=0o750)
    os.chmod(data, 0o750)  # an existing directory keeps its mode otherwise, 0755 under umask 022
    shutil.copytree(src / "blobs", config.blob_path, dirs_exist_ok=True)
    shutil.copytree(src / "keys", config.keys_path)
    os.chmod(config.keys_path, 0o700)
    config.import_path.mkdir(exist_ok=True)
    _restore_database(src, config)
    _fsync_tree(data)
    # The secret goes last: its presence marks the data directory as initialized.
    shutil.copy2(src / "secret_key", data / "secret_key")
    os.chmod(data / "secret_key", 0o600)
    return manifest


def _restore_database(src, config):
    """The backup's database into config's: a SQLite file, or pg_restore into an empty
    PostgreSQL database. A backup of the other kind is refused with the way to get there."""
    dumps = {path.suffix: path for path in (src / "hexvault.db", src / "hexvault.pgdump") if path.is_file()}
    wanted = ".pgdump" if config.database_url else ".db"
    if wanted not in dumps:
        held = "PostgreSQL" if ".pgdump" in dumps else "SQLite"
        raise BackupError(f"{src} holds a {held} database, but database_url says "
                          f"{'PostgreSQL' if config.database_url else 'SQLite'}; restore it with the "
                          "database_url it was made with (then `hexvault db copy` moves SQLite to PostgreSQL)")
    db.init_database(config.database_target, state_dir=config.data_path)
    with database.connection_context():
        if config.database_url and database.get_tables():
            raise BackupError(f"database {config.database_name} is not empty; restore only into a new database")
        db.load(dumps[wanted])
