"""Fault tolerance: kill -9 during publishes, and racing publishes, against real servers."""

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from appliance import check
from appliance.db import database
from appliance.protocol import registry
from tests.conftest import make_world
from tests.driver import Driver, erlang_package
from tests.procserver import ServerProcess

KILLS = 50


def test_kill_9_during_publishes_loses_no_acknowledged_release(runtime, config):
    world = make_world(runtime)
    database.close()  # the child process owns the database while it runs
    server = ServerProcess(config.data_dir)
    rng = random.Random(1234)
    acknowledged, counter = [], [0]
    bad_reads = []

    def publisher(driver, stop):
        while not stop.is_set():
            counter[0] += 1
            data = erlang_package(f"p{counter[0]:04d}", "1.0.0")
            try:
                response = driver.publish(data)
            except requests.RequestException:
                return
            if response.status_code == 201:
                acknowledged.append((f"p{counter[0]:04d}", data))

    def reader(driver, stop):
        # Every 200 the server gives while it is being killed must be a whole, verifying file.
        while not stop.is_set():
            try:
                response = driver.repo("names")
            except requests.RequestException:
                return
            if response.status_code == 200:
                try:
                    registry.decode_names(registry.decode_signed(response.content, driver.public_key), "acme")
                except Exception as exc:  # a partial or unsigned file would land here
                    bad_reads.append(repr(exc))

    for _ in range(KILLS):
        server.start()
        driver = Driver(server.url, runtime, **world)
        stop = threading.Event()
        threads = [threading.Thread(target=publisher, args=(driver, stop)),
                   threading.Thread(target=reader, args=(driver, stop))]
        before = len(acknowledged)
        for t in threads:
            t.start()
        # Every life of the server acknowledges at least one publish before the random kill, so
        # the run tests kills during publishing however slow the machine is (PostgreSQL, load).
        deadline = time.monotonic() + 60
        while len(acknowledged) == before and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.3))
        server.kill()
        stop.set()
        for t in threads:
            t.join(timeout=30)

    server.start()
    try:
        driver = Driver(server.url, runtime, **world)
        assert len(acknowledged) > 10  # the loop really published between kills
        for name, data in acknowledged:
            record = driver.registry_package(name)
            assert [r["version"] for r in record["releases"]] == ["1.0.0"]
            assert driver.repo(f"tarballs/{name}-1.0.0.tar").content == data
        assert bad_reads == []
    finally:
        server.stop()
    database.connect(reuse_if_open=True)
    assert check.run(runtime) == []


def test_parallel_publishes_and_racing_versions(hv):
    distinct = [erlang_package(f"pkg{i:02d}", "1.0.0") for i in range(50)]
    racing = [erlang_package("contested", "1.0.0", module_body=f"greet() -> {i}.\n") for i in range(10)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda data: (data, hv.publish(data).status_code), distinct + racing))
    statuses = [status for _data, status in results]
    assert all(status < 500 for status in statuses)
    assert statuses[:50] == [201] * 50
    race = [status for _data, status in results[50:]]
    assert race.count(201) == 1 and race.count(422) == 9
    winner = next(data for data, status in results[50:] if status == 201)
    assert hv.repo("tarballs/contested-1.0.0.tar").content == winner
    assert len(hv.registry_names()["packages"]) == 51
    for i in range(50):
        assert hv.registry_package(f"pkg{i:02d}")["releases"][0]["version"] == "1.0.0"
    assert check.run(hv.runtime) == []
