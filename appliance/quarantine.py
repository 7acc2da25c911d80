"""Quarantine: take rows the registry cannot serve out of the database, without losing them.

``hexvault check --repair`` calls ``quarantine_unservable`` for every package whose registry
file cannot be built (``registry_builder.failing_packages``): a name no file can carry, a version
no client can parse, rows an older Hexvault let in. The releases that cause it (or the whole
package when its name is the cause) are written to ``DATA/quarantine/ORG/<time>-package-<id>/``
(``record.json`` with the rows, and each release's tarball as ``<outer checksum>.tar``), then
deleted in one audited transaction, and the organization's registry is rebuilt. Nothing is
deleted before the copy is on disk; an operator can republish from the copied tarballs.
"""

import datetime
import json

from playhouse.shortcuts import model_to_dict

from appliance import audit, registry_builder
from appliance.db import write_tx
from appliance.models import Package, PendingBuild, Release, Requirement
from appliance.packages import tarball_key
from appliance.protocol import versions
from appliance.protocol.names import MAX_VERSION_LENGTH, is_package_name, shown
from appliance.runtime import write_private
from storage import BlobNotFound


def _bad_version(version):
    try:
        versions.check_release_version(version)
    except versions.InvalidVersion:
        return True
    return not isinstance(version, str) or len(version) > MAX_VERSION_LENGTH


def _copy_out(rt, org, package, releases, reason):
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    # Named by id, never by the package name: the name may be what no file can carry.
    dest = rt.config.data_path / "quarantine" / org.name / f"{stamp}-package-{package.id}"
    dest.mkdir(parents=True, mode=0o700)
    record = {"organization": org.name, "reason": reason, "package": model_to_dict(package, recurse=False),
              "releases": []}
    for release in releases:
        row = model_to_dict(release, recurse=False)
        row["requirements"] = [model_to_dict(r, recurse=False) for r in
                               Requirement.select().where(Requirement.release == release.id)]
        record["releases"].append(row)
        try:
            write_private(dest / f"{release.outer_checksum}.tar", rt.store.get(tarball_key(release.outer_checksum)))
        except BlobNotFound:
            row["tarball_missing"] = True
    write_private(dest / "record.json", json.dumps(record, indent=1, default=str).encode())
    return dest


def quarantine_package(rt, org, name, reason, *, actor=audit.CLI):
    """Move the unservable part of one package to quarantine; returns the folder, or None if
    nothing was held (only stale pending rows, which are dropped)."""
    package = Package.get_or_none((Package.organization == org.id) & (Package.name == name))
    dest = None
    if package is not None:
        releases = list(Release.select().where(Release.package == package.id))
        bad = releases if not is_package_name(name) else [r for r in releases if _bad_version(r.version)]
        whole = not bad or len(bad) == len(releases)
        bad = releases if whole else bad
        dest = _copy_out(rt, org, package, bad, reason)
        with write_tx():
            for release in bad:
                release.delete_instance(recursive=True)
            if whole:
                package.delete_instance(recursive=True)
            else:
                Package.update(revision=Package.revision + 1).where(Package.id == package.id).execute()
                PendingBuild.create(organization=org, package_name=name)
            if whole or not is_package_name(name):
                PendingBuild.delete().where((PendingBuild.organization == org.id)
                                            & (PendingBuild.package_name == name)).execute()
            audit.record(actor, "package.quarantine", organization=org, target=shown(name, 80),
                         releases=[shown(r.version) for r in bad], reason=reason, folder=str(dest))
    else:
        with write_tx():
            PendingBuild.delete().where((PendingBuild.organization == org.id)
                                        & (PendingBuild.package_name == name)).execute()
    return dest


def quarantine_unservable(rt, org, *, actor=audit.CLI):
    """Quarantine every package of ``org`` whose registry file cannot be built, then rebuild the
    organization's registry. Returns [(name, reason, folder or None)]."""
    done = []
    for name, reason in registry_builder.failing_packages(rt, org).items():
        done.append((name, reason, quarantine_package(rt, org, name, reason, actor=actor)))
    if done:
        registry_builder.full(rt, org)
    return done
