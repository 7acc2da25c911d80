"""Webhooks against a real receiver (stdlib http.server on 127.0.0.1) that checks every
signature: every kind of change, one event each, written with the change; a receiver that is
down and then up; a receiver that hangs; two workers racing; kill -9 of `hexvault serve`; the
admin pages with redelivery; bad hook URLs."""

import datetime
import re
import time

import pytest
import requests

from appliance import accounts, audit, keys, orgs
from appliance.db import database, write_tx
from appliance.errors import Invalid
from appliance.models import WebhookDelivery, WebhookEvent, utcnow
from appliance.ops import delivery, webhooks
from appliance.ops.delivery import DeliveryWorker
from appliance.protocol import tarball
from tests.conftest import make_world
from tests.driver import erlang_package
from tests.procserver import ServerProcess
from tests.webclient import WebSession
from tests.webhook_receiver import Receiver, unused_port

# Retries come quickly in tests: no test waits on the production backoff, none asserts a duration.
FAST = dict(webhook_retry_seconds=0.02, webhook_retry_max_seconds=0.1, webhook_timeout=2.0)


@pytest.fixture
def fast(hv):
    hv.runtime.config = hv.runtime.config.with_updates(**FAST)
    return hv


@pytest.fixture
def worker(fast):
    started = DeliveryWorker(fast.runtime).start()
    yield started
    started.stop()


@pytest.fixture
def web(hv):
    session = WebSession(hv.url)
    assert session.login().status_code == 200
    return session


def create_hook_in_ui(web, url, org="acme"):
    page = web.post(f"/admin/orgs/{org}/webhooks", {"url": url})
    assert page.status_code == 200 and page.history[0].status_code == 303, page.text
    assert page.headers["Cache-Control"] == "no-store"
    assert "secret-gone" in web.http.get(page.url).text  # shown once: a reload shows (and creates) nothing
    return re.search(r'<pre id="secret" class="secret">([0-9a-f]{64})</pre>', page.text).group(1)


def deliveries(state=None):
    query = WebhookDelivery.select()
    if state:
        query = query.where(WebhookDelivery.state == state)
    return list(query.order_by(WebhookDelivery.id))


def wait_until(condition, deadline=30.0, what="the condition"):
    end = time.monotonic() + deadline
    while not condition():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_every_kind_of_change_reaches_the_hook_once_and_signed(fast, worker, web):
    hv = fast
    with Receiver() as rx:
        rx.secret = create_hook_in_ui(web, rx.url)
        # The secret was shown once: not on the hook's pages, and not in the database in clear.
        hook = webhooks.list_for(hv.org)[0]
        assert rx.secret not in web.get("/admin/orgs/acme/webhooks").text
        assert rx.secret not in web.get(f"/admin/orgs/acme/webhooks/{hook.id}").text
        assert rx.secret not in hook.secret_encrypted

        assert hv.publish(erlang_package("hello", "0.1.0")).status_code == 201
        assert hv.publish(erlang_package("hello", "0.1.0", module_body="greet() -> 2.\n"),
                          replace=True).status_code == 200
        release = "repos/acme/packages/hello/releases/0.1.0"
        assert hv.api("POST", f"{release}/retire", body={"reason": "security", "message": "CVE-1"}).status_code == 204
        assert hv.api("DELETE", f"{release}/retire").status_code == 204
        docs = tarball.create_docs({"index.html": b"<h1>docs</h1>"})
        assert hv.api("POST", f"{release}/docs", data=docs).status_code == 201
        assert hv.api("DELETE", f"{release}/docs").status_code == 204
        assert hv.publish(erlang_package("hello", "0.2.0")).status_code == 201
        assert hv.api("DELETE", "repos/acme/packages/hello/releases/0.2.0").status_code == 204
        key, _secret = keys.create(hv.runtime.app_secret, "ci", [["repository", "acme"]], organization=hv.org)
        keys.revoke(key)
        accounts.create_user("dave", "dave-password", rounds=4)
        assert web.post("/admin/orgs/acme/members", {"username": "dave", "role": "write"}).status_code == 200
        web.post("/admin/orgs/acme/members/dave/role", {"role": "read"})
        web.post("/admin/orgs/acme/members/dave/remove")
        # Another organization's changes go to its own hooks (it has none), never to acme's.
        beta = orgs.create("beta")
        orgs.add_member(beta, accounts.get_user("dave"), "read")

        expected = ["release.publish", "release.replace", "release.retire", "release.unretire", "docs.publish",
                    "docs.revert", "release.publish", "release.revert", "key.generate", "key.revoke",
                    "membership.add", "membership.role", "membership.remove"]
        got = rx.wait_for(lambda r: len(r) >= len(expected), what="13 events")
        assert sorted(r["event"]["type"] for r in got) == sorted(expected)
        assert all(r["signed"] for r in got), "a body did not verify with the hook's secret"
        assert len({r["event"]["id"] for r in got}) == len(expected)
        for r in got:
            assert r["headers"]["X-Hexvault-Event"] == r["event"]["type"]
            assert r["headers"]["X-Hexvault-Event-Id"] == r["event"]["id"]
            assert r["headers"]["Content-Type"] == "application/json"
            assert r["event"]["organization"] == "acme"
        publish = next(r["event"] for r in got if r["event"]["type"] == "release.publish")
        assert (publish["package"], publish["version"]) in {("hello", "0.1.0"), ("hello", "0.2.0")}
        assert publish["actor"].startswith("admin") and "ip" not in publish
        retire = next(r["event"] for r in got if r["event"]["type"] == "release.retire")
        assert retire["details"]["reason"] == "security" and retire["details"]["message"] == "CVE-1"
        assert WebhookEvent.select().where(WebhookEvent.organization == beta.id).count() == 0
        wait_until(lambda: len(deliveries("delivered")) == len(expected), what="all deliveries recorded")
        page = web.get(f"/admin/orgs/acme/webhooks/{hook.id}").text
        assert page.count('class="delivery-delivered"') == len(expected)


def test_the_event_commits_with_the_change_or_not_at_all(hv):
    webhooks.create(hv.runtime, hv.org, "http://127.0.0.1:9/hook")
    with pytest.raises(RuntimeError), write_tx():
        orgs.add_member(hv.org, accounts.create_user("erin", "erin-password", rounds=4), "read")
        raise RuntimeError("the surrounding transaction fails after the change was audited")
    assert WebhookEvent.select().count() == 0 and WebhookDelivery.select().count() == 0
    assert hv.publish(erlang_package("hello", "0.1.0")).status_code == 201
    assert hv.publish(erlang_package("hello", "0.1.0", module_body="greet() -> 2.\n")).status_code == 422
    assert [e.type for e in WebhookEvent.select()] == ["release.publish"]


def test_a_receiver_that_is_down_gets_every_event_once_it_is_up_and_redeliver_from_the_page(fast, worker, web):
    hv = fast
    port = unused_port()
    secret = create_hook_in_ui(web, f"http://127.0.0.1:{port}/hook")
    hook = webhooks.list_for(hv.org)[0]
    for version in ("0.1.0", "0.2.0"):
        assert hv.publish(erlang_package("hello", version)).status_code == 201
    wait_until(lambda: all(d.attempts >= 3 for d in deliveries()), what="three refused attempts each")
    page = web.get(f"/admin/orgs/acme/webhooks/{hook.id}").text
    assert "retrying at" in page and "ConnectionError" in page

    with Receiver(port=port, secret=secret) as rx:
        rx.status = 503  # up, but failing for a while longer
        rx.wait_for(lambda r: len(r) >= 3, what="attempts answered 503")
        rx.status = 200
        wait_until(lambda: len(deliveries("delivered")) == 2, what="both delivered")
        assert {r["event"]["version"] for r in rx.requests if r["signed"]} == {"0.1.0", "0.2.0"}
        delivered = deliveries("delivered")
        assert all(d.attempts >= 4 and d.last_status == 200 for d in delivered)

        page = web.get(f"/admin/orgs/acme/webhooks/{hook.id}").text
        assert page.count('class="delivery-delivered"') == 2 and "Redeliver" in page
        first = delivered[0]
        seen = len(rx.requests)
        again = web.post(f"/admin/orgs/acme/webhooks/{hook.id}/deliveries/{first.id}/redeliver")
        assert again.status_code == 200 and "queued for delivery again" in again.text
        got = rx.wait_for(lambda r: len(r) > seen, what="the redelivery")[-1]
        assert got["signed"] and got["headers"]["X-Hexvault-Event-Id"] == first.event.event_id
        assert got["headers"]["X-Hexvault-Delivery"] != str(first.id)
        assert audit.entries(action="webhook.redeliver")[0].details["event"] == first.event.event_id


def test_a_hanging_receiver_times_out_and_never_holds_up_other_hooks(fast):
    hv = fast
    hv.runtime.config = hv.runtime.config.with_updates(webhook_timeout=0.3)
    with Receiver() as hanging, Receiver() as healthy:
        hanging.hang = True
        webhooks.create(hv.runtime, hv.org, hanging.url)  # first: its delivery is claimed first
        _hook, healthy.secret = webhooks.create(hv.runtime, hv.org, healthy.url)
        assert hv.publish(erlang_package("hello", "0.1.0")).status_code == 201
        single = DeliveryWorker(hv.runtime, threads=1).start()
        try:
            got = healthy.wait_for(lambda r: len(r) == 1, what="the healthy hook's event")
            assert got[0]["signed"] and got[0]["event"]["type"] == "release.publish"
            wait_until(lambda: (deliveries()[0].last_error or "").startswith("timed out"), what="the timeout")
            assert deliveries()[0].state == "pending"  # to be retried, not given up
        finally:
            single.stop(timeout=10)


def test_two_workers_never_send_the_same_delivery_twice(fast):
    hv = fast
    with Receiver() as rx:
        _hook, rx.secret = webhooks.create(hv.runtime, hv.org, rx.url)
        for n in range(12):
            keys.create(hv.runtime.app_secret, f"k{n}", [["repository", "acme"]], organization=hv.org)
        workers = [DeliveryWorker(hv.runtime, threads=3).start() for _ in range(2)]
        try:
            got = rx.wait_for(lambda r: len(r) >= 12, what="12 events")
            wait_until(lambda: len(deliveries("delivered")) == 12, what="12 deliveries recorded")
        finally:
            for w in workers:
                w.stop()
        sent = [r["headers"]["X-Hexvault-Delivery"] for r in rx.requests]
        assert len(sent) == len(set(sent)) == 12 and all(r["signed"] for r in got)


def test_hook_urls_that_are_not_http_have_credentials_or_point_at_the_server_are_refused(hv, web):
    external = hv.url  # base_url of the live server
    port = hv.runtime.config.port
    for url, reason in [
        ("ftp://ci.corp/hook", "http:// or https://"),
        ("javascript:alert(1)", "http:// or https://"),
        ("http://", "http:// or https://"),
        ("http://ci.corp:99999/", "not a valid URL"),
        ("https://user:pw@ci.corp/hook", "user name or password"),
        (f"{external}/api/hook", "this Hexvault server itself"),
        (f"http://localhost:{port}/x", "this Hexvault server itself"),
        (f"http://127.0.0.1:{port}/x", "this Hexvault server itself"),
        ("", "can't be blank"),
    ]:
        with pytest.raises(Invalid) as refused:
            webhooks.create(hv.runtime, hv.org, url)
        assert reason in refused.value.errors["url"], url
    page = web.post("/admin/orgs/acme/webhooks", {"url": f"{external}/hook"})
    assert page.status_code == 422 and "this Hexvault server itself" in page.text
    assert webhooks.list_for(hv.org) == []


def test_only_organization_admins_see_and_change_hooks_and_every_form_needs_csrf(hv, web):
    hook, _secret = webhooks.create(hv.runtime, hv.org, "http://127.0.0.1:9/hook")
    orgs.add_member(hv.org, accounts.create_user("wendy", "wendy-password", rounds=4), "write")
    writer = WebSession(hv.url)
    assert writer.login("wendy", "wendy-password").status_code == 200
    assert writer.get("/admin/orgs/acme/webhooks").status_code == 403
    assert writer.get(f"/admin/orgs/acme/webhooks/{hook.id}").status_code == 403
    assert writer.post(f"/admin/orgs/acme/webhooks/{hook.id}/delete").status_code == 403
    assert web.post(f"/admin/orgs/acme/webhooks/{hook.id}/delete", csrf=False).status_code == 400
    assert webhooks.list_for(hv.org) == [hook]
    assert "Webhooks" in web.get("/admin/orgs/acme").text
    assert web.post(f"/admin/orgs/acme/webhooks/{hook.id}/delete").status_code == 200
    assert webhooks.list_for(hv.org) == [] and audit.entries(action="webhook.delete")


def test_undelivered_events_survive_kill_9_of_serve(runtime, config):
    world = make_world(runtime)
    port = unused_port()  # the receiver is down while the server takes the changes
    _hook, secret = webhooks.create(runtime, world["org"], f"http://127.0.0.1:{port}/hook")
    database.close()
    env = {f"HEXVAULT_{k.upper()}": str(v) for k, v in FAST.items()}
    server = ServerProcess(config.data_dir, env=env).start()
    try:
        for name in ("alpha", "beta", "gamma"):
            published = requests.post(f"{server.url}/api/repos/acme/packages/{name}/releases",
                                      data=erlang_package(name, "1.0.0"),
                                      headers={"authorization": world["api_key"],
                                               "content-type": "application/octet-stream"})
            assert published.status_code == 201, published.text
        database.connect(reuse_if_open=True)
        wait_until(lambda: all(d.attempts >= 2 for d in deliveries()) and len(deliveries()) == 3,
                   what="failed attempts by the first server")
        database.close()
        server.kill()
        with Receiver(port=port, secret=secret) as rx:
            server = ServerProcess(config.data_dir, port=server.port, env=env).start()
            got = rx.wait_for(lambda r: {e["event"].get("package") for e in r} >= {"alpha", "beta", "gamma"},
                              deadline=60, what="the three events after the restart")
            assert all(r["signed"] for r in got)
            assert {r["event"]["type"] for r in got} == {"release.publish"}
            database.connect(reuse_if_open=True)
            wait_until(lambda: len(deliveries("delivered")) == 3, deadline=60, what="deliveries recorded")
    finally:
        server.stop()


def test_finished_deliveries_are_forgotten_after_the_retention_period_pending_ones_never(fast):
    hv = fast
    with Receiver() as rx:
        webhooks.create(hv.runtime, hv.org, rx.url)
        keys.create(hv.runtime.app_secret, "first", [["repository", "acme"]], organization=hv.org)
        assert delivery.deliver_next(hv.runtime, "test-worker")
    keys.create(hv.runtime.app_secret, "second", [["repository", "acme"]], organization=hv.org)
    assert delivery.deliver_next(hv.runtime, "test-worker")  # the receiver is gone: refused
    delivered, pending = deliveries()
    assert (delivered.state, pending.state) == ("delivered", "pending")
    delivery.prune(now=utcnow() + delivery.RETENTION - datetime.timedelta(minutes=1))
    assert len(deliveries()) == 2
    delivery.prune(now=utcnow() + delivery.RETENTION + datetime.timedelta(minutes=1))
    assert [d.id for d in deliveries()] == [pending.id]
    assert [e.id for e in WebhookEvent.select()] == [pending.event_id]


def test_a_secret_the_app_secret_cannot_decrypt_is_a_recorded_failure_not_a_dead_worker(fast):
    hv = fast
    with Receiver() as rx:
        webhooks.create(hv.runtime, hv.org, rx.url)
        keys.create(hv.runtime.app_secret, "ci", [["repository", "acme"]], organization=hv.org)
        hv.runtime.app_secret = b"0" * 64  # as if DATA/secret_key had been replaced
        assert delivery.deliver_next(hv.runtime, "test-worker")
        (failed,) = deliveries()
        assert failed.state == "pending" and "cannot be decrypted" in failed.last_error and rx.requests == []
