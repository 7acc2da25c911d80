"""Mutated tarballs against the live publish endpoint: never a 5xx, never a partial store."""

import base64
import random

from hypothesis import HealthCheck, assume, given, settings
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


# Header values as waitress passes them on (it refuses control characters itself): latin-1 text.
HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f"), max_size=80)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scheme=st.sampled_from(["Basic ", "basic ", "Bearer ", "", "Basic  ", "Digest "]),
       value=st.one_of(HEADER_TEXT, HEADER_TEXT.map(lambda t: base64.b64encode(t.encode("latin-1")).decode()),
                       st.binary(max_size=60).map(lambda b: base64.b64encode(b).decode())))
def test_garbled_authorization_headers_get_401_on_publish_and_repository(hv, scheme, value):
    header = (scheme + value).strip()
    assume(header)
    publish = hv.api("POST", "repos/acme/publish", data=GOOD, key=header)
    # 429: well-formed Basic credentials count as failed logins and are rate-limited
    assert publish.status_code in (401, 429), (header, publish.status_code, publish.content[:200])
    assert hv.repo("names", key=header).status_code in (401, 429)
    assert Release.select().count() == 0


def test_basic_auth_with_non_ascii_bytes_is_a_401_not_a_traceback(hv):
    for header in ("Basic \u00e9t\u00e9", "Basic YWRtaW46\u00ff", "Basic \u00ff" * 3, "\u00e9" * 32):
        assert hv.api("POST", "repos/acme/publish", data=GOOD, key=header).status_code == 401
        assert hv.repo("names", key=header).status_code == 401
        assert hv.api("GET", "users/me", key=header).status_code == 401
