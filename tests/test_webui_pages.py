"""Issue 13.5 over real HTTP: the organization page leads with members and keys (client set-up
has its own page), package pages offer each tarball to members, link requirements to their
packages, list dependents, and mark retired releases in every list of releases."""

import re

import pytest

from appliance import accounts, catalog, orgs, packages, registry_builder
from tests.driver import erlang_package
from tests.webclient import WebSession


def _session(hv, username="admin", password="admin-password"):
    session = WebSession(hv.url)
    assert session.login(username, password).status_code == 200
    return session


def _member(hv, username, org, role):
    orgs.add_member(org, accounts.create_user(username, f"{username}-password", rounds=4), role)
    return _session(hv, username, f"{username}-password")


def _requires(name, requirement="~> 1.0", **extra):
    return dict(name=name, app=name, requirement=requirement, optional=False, **extra)


def test_org_page_leads_with_members_and_keys_and_links_client_setup_on_its_own_page(hv):
    web = _session(hv)
    page = web.get("/admin/orgs/acme").text
    sections = re.findall(r'<section class="[^"]*" id="([^"]+)"', page)
    assert sections[:2] == ["members", "org-keys"], sections
    assert "mix hex.repo add" not in page and "rebar3-setup" not in page and "BEGIN PUBLIC KEY" not in page
    assert 'href="/admin/orgs/acme/setup"' in page
    setup = web.get("/admin/orgs/acme/setup")
    assert setup.status_code == 200
    assert re.search(r'<pre id="mix-setup">[^<]*mix hex.repo add acme ', setup.text)
    assert 'id="rebar3-setup"' in setup.text and "BEGIN PUBLIC KEY" in setup.text
    assert 'aria-current="page">Client set-up</a>' in setup.text
    # A read member sets up their client too; someone of another organization sees no such page.
    assert _member(hv, "reader", hv.org, "read").get("/admin/orgs/acme/setup").status_code == 200
    beta = orgs.create("beta")
    outsider = _member(hv, "outsider", beta, "admin").get("/admin/orgs/acme/setup")
    assert outsider.status_code == 404 and "mix hex.repo add" not in outsider.text


def test_members_download_each_release_tarball_from_the_package_page_and_outsiders_cannot(hv):
    published = {v: erlang_package("hello", v) for v in ("0.1.0", "0.2.0")}
    for data in published.values():
        assert hv.publish(data).status_code == 201
    reader = _member(hv, "reader", hv.org, "read")
    page = reader.get("/admin/orgs/acme/packages/hello").text
    links = re.findall(r'href="(/admin/orgs/acme/packages/hello/([^/"]+)/download)"', page)
    assert {version for _href, version in links} == set(published)
    for href, version in set(links):
        response = reader.get(href)
        assert response.status_code == 200 and response.content == published[version]
        assert response.headers["Content-Disposition"] == f'attachment; filename="hello-{version}.tar"'
        assert response.headers["ETag"] == f'"{packages.get_release(hv.org, "hello", version).outer_checksum}"'
    assert reader.get("/admin/orgs/acme/packages/hello/9.9.9/download").status_code == 404
    # Refused like every other page of the organization: 404 for another organization's admin,
    # the login form for a browser without a session.
    beta = orgs.create("beta")
    registry_builder.ensure_index(hv.runtime, beta)
    outsider = _member(hv, "outsider", beta, "admin").get("/admin/orgs/acme/packages/hello/0.1.0/download")
    assert outsider.status_code == 404 and published["0.1.0"] not in outsider.content
    assert "No such organization." in outsider.text
    anonymous = WebSession(hv.url).get("/admin/orgs/acme/packages/hello/0.1.0/download", allow_redirects=False)
    assert anonymous.status_code == 302 and "/admin/login" in anonymous.headers["Location"]


@pytest.fixture
def related(hv):
    """acme: base 1.0.0; app 1.0.0 requires base, app 2.0.0 does not; tool requires base, a hex.pm
    package and beta's shared. beta: shared."""
    beta = orgs.create("beta")
    registry_builder.ensure_index(hv.runtime, beta)
    orgs.add_member(beta, hv.admin, "admin")
    assert hv.publish(erlang_package("shared", "1.0.0"), org="beta").status_code == 201
    for name, version, requirements in (
            ("base", "1.0.0", []),
            ("app", "1.0.0", [_requires("base", repository="acme")]),
            ("app", "2.0.0", []),
            ("tool", "0.3.0", [_requires("base"), _requires("jason", repository="hexpm"),
                               _requires("shared", repository="beta")])):
        assert hv.publish(erlang_package(name, version, requirements=requirements)).status_code == 201, name
    return beta


def test_dependents_are_the_packages_of_the_organization_whose_releases_require_it(hv, related):
    found = catalog.dependents(packages.get_package(hv.org, "base"))
    assert [(d.package.name, [(r.version, req) for r, req in d.requiring], d.latest) for d in found] == [
        ("app", [("1.0.0", "~> 1.0")], False), ("tool", [("0.3.0", "~> 1.0")], True)]
    assert catalog.dependents(packages.get_package(hv.org, "tool")) == []
    # beta's shared is required from acme, not from its own organization.
    assert catalog.dependents(packages.get_package(related, "shared")) == []


def test_package_page_links_requirements_it_can_show_and_lists_dependents(hv, related):
    admin = _session(hv)
    tool = admin.get("/admin/orgs/acme/packages/tool").text
    requirements = re.search(r'<ul id="requirements">(.*?)</ul>', tool, re.S).group(1)
    assert '<a href="/admin/orgs/acme/packages/base"><code>base</code></a>' in requirements
    assert '<a href="/admin/orgs/beta/packages/shared"><code>shared</code></a>' in requirements
    assert "<code>jason</code>" in requirements and "/packages/jason" not in requirements  # hex.pm's
    # A member of acme alone gets no link into beta, which they cannot see.
    reader_tool = _member(hv, "reader", hv.org, "read").get("/admin/orgs/acme/packages/tool").text
    assert "/admin/orgs/beta/" not in reader_tool and "<code>shared</code>" in reader_tool
    base = admin.get("/admin/orgs/acme/packages/base").text
    dependents = re.search(r'<ul id="dependents">(.*?)</ul>', base, re.S).group(1)
    assert re.findall(r'href="/admin/orgs/acme/packages/(\w+)"', dependents) == ["app", "tool"]
    assert "(not its latest release)" in dependents.split("packages/tool")[0]
    assert "No package of acme requires" in admin.get("/admin/orgs/acme/packages/app").text


def test_retired_releases_are_marked_in_every_list_of_releases(hv, related):
    packages.retire(hv.runtime, hv.org, "app", "2.0.0", "deprecated", "use tool")
    packages.retire(hv.runtime, hv.org, "app", "1.0.0", "security", "a hole")
    admin = _session(hv)
    retired_tag = re.compile(r'<span class="tag[^"]*"[^>]*>retired</span>')

    versions = re.search(r'<ul class="versions"[^>]*>(.*?)</ul>',
                         admin.get("/admin/orgs/acme/packages/app").text, re.S).group(1)
    assert len(retired_tag.findall(versions)) == 2
    rows = {m.group(1): m.group(0) for m in re.finditer(
        r'<tr[^>]*>\s*<td[^>]*><a href="/admin/orgs/acme/packages/(\w+)">.*?</tr>',
        admin.get("/admin/orgs/acme/packages").text, re.S)}
    assert retired_tag.search(rows["app"]) and not retired_tag.search(rows["base"])
    listed = re.search(r'<ul class="packages">(.*?)</ul>', admin.get("/admin/orgs/acme").text, re.S).group(1)
    assert [name for name, tag in re.findall(r'packages/(\w+)">\w+</a>\s*<span class="version">[^<]*</span>'
                                             r'( <span class="tag retired")?', listed) if tag] == ["app"]
    dependents = re.search(r'<ul id="dependents">(.*?)</ul>',
                           admin.get("/admin/orgs/acme/packages/base").text, re.S).group(1)
    assert retired_tag.search(dependents.split("packages/tool")[0])  # app 1.0.0, retired
    assert not retired_tag.search(dependents.split("packages/tool")[1])
