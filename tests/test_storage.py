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
