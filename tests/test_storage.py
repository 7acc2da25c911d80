import hashlib
import io
import os

import pytest

from storage import BlobNotFound, InvalidKey, open_store


@pytest.fixture
def store(tmp_path):
    return open_store(tmp_path / "blobs")


def test_put_get_roundtrip_and_overwrite(store):
    store.put("registry/acme/names", b"one")
    assert store.get("registry/acme/names") == b"one"
    store.put("registry/acme/names", b"two")
    assert store.get("registry/acme/names") == b"two"
    with store.open("registry/acme/names") as fh:
        assert fh.read() == b"two"
    assert store.exists("registry/acme/names")


def test_missing_blob_raises(store):
    with pytest.raises(BlobNotFound):
        store.get("nope")
    with pytest.raises(BlobNotFound):
        store.info("nope")
    assert not store.exists("nope")
    store.delete("nope")  # deleting what is not there is not an error


@pytest.mark.parametrize("key", ["../etc/passwd", "/abs", "a/../b", "a//b", "", "a/.tmp-x", ".hidden", "a b",
                                 "a\\b", "a/\x00"])
def test_unsafe_keys_are_refused(store, key):
    with pytest.raises(InvalidKey):
        store.put(key, b"x")


def test_etag_changes_with_content_and_is_quoted_sha256(store):
    store.put("k", b"abc")
    first = store.info("k")
    assert first.size == 3
    assert first.etag == '"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"'
    store.put("k", b"abcd")
    assert store.info("k").etag != first.etag


def test_put_leaves_no_temp_files_and_list_skips_them(store, tmp_path):
    store.put("tarballs/ab/x.tar", b"data")
    # a crash mid-write leaves a temp file; it is never listed and recovery removes it
    (tmp_path / "blobs" / "tarballs" / "ab" / ".tmp-crashed").write_bytes(b"half")
    assert list(store.list("tarballs")) == ["tarballs/ab/x.tar"]
    assert store.remove_temp_files() == 1
    assert sorted(os.listdir(tmp_path / "blobs" / "tarballs" / "ab")) == ["x.tar"]


def test_delete_removes(store):
    store.put("a/b", b"1")
    store.delete("a/b")
    assert not store.exists("a/b")
    assert list(store.list()) == []


def test_stat_gives_size_and_the_time_of_the_last_put(store):
    store.put("a/b", b"12345")
    os.utime(store.root / "a" / "b", (1_000_000, 1_000_000))
    assert store.stat("a/b") == (5, 1_000_000)
    store.put("a/b", b"123")
    assert store.stat("a/b").size == 3 and store.stat("a/b").modified > 1_000_000
    with pytest.raises(BlobNotFound):
        store.stat("a/c")


def test_a_cached_blob_replaced_by_another_process_is_served_fresh(tmp_path):
    reader, writer = open_store(tmp_path / "blobs"), open_store(tmp_path / "blobs")  # two processes' views
    writer.put("registry/acme/names", b"first")
    fh, info = reader.open_with_info("registry/acme/names")
    assert fh.read() == b"first"
    writer.put("registry/acme/names", b"other")  # same size: only the new file's identity tells
    fh, fresh = reader.open_with_info("registry/acme/names")
    assert fh.read() == b"other" and fresh.etag != info.etag and fresh.size == 5
    writer.delete("registry/acme/names")
    with pytest.raises(BlobNotFound):
        reader.open_with_info("registry/acme/names")


def test_read_cache_stays_within_its_budget_and_large_blobs_stream_from_disk(tmp_path):
    from storage.local import CACHE_FILE_BYTES

    store = open_store(tmp_path / "blobs", cache_bytes=4096)
    for i in range(50):
        store.put(f"k/{i}", bytes([i]) * 1000)
    for _round in range(2):
        for i in range(50):
            fh, info = store.open_with_info(f"k/{i}")
            assert fh.read() == bytes([i]) * 1000 and info.size == 1000
    assert store._cache._used <= 4096  # noqa: SLF001 - the bound is the point of this test
    big = os.urandom(CACHE_FILE_BYTES + 1)
    store.put("tarballs/big", big)
    for _round in range(2):
        fh, info = store.open_with_info("tarballs/big")
        with fh:
            assert isinstance(fh.raw, io.FileIO) and fh.read() == big
        assert info.etag == f'"{hashlib.sha256(big).hexdigest()}"'


def test_read_cache_can_be_turned_off(tmp_path):
    store = open_store(tmp_path / "blobs", cache_bytes=0)
    store.put("a", b"xyz")
    assert store.open_with_info("a")[0].read() == b"xyz"
    store.put("a", b"xyzw")
    fh, info = store.open_with_info("a")
    assert fh.read() == b"xyzw" and info.size == 4
