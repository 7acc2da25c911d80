"""Mutated tarballs against the live publish endpoint: never a 5xx, never a partial store."""

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.models import Release
from tests.driver import erlang_package

GOOD = erlang_package("fuzzed", "1.0.0")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2 ** 32 - 1), flips=st.integers(1, 8), cut=st.one_of(st.none(), st.integers(0, len(GOOD))))
def test_mutated_tarballs_get_4xx_and_store_nothing(hv, seed, flips, cut):
    rng = random.Random(seed)
    data = bytearray(GOOD)
    for _ in range(flips):
        data[rng.randrange(len(data))] ^= rng.randrange(1, 256)
    data = bytes(data[:cut] if cut is not None else data)
    before = sorted(hv.runtime.store.list())
    response = hv.api("POST", "repos/acme/publish?replace=true", data=data)
    assert response.status_code < 500, response.content[:300]
    if response.status_code >= 400:
        assert sorted(hv.runtime.store.list()) == before
        assert response.term["errors"]
    else:  # a flip in tar padding can leave a valid package: then it is stored whole
        assert Release.select().count() >= 1
