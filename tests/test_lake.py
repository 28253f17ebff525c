"""The lake's contract, written once and run on memory://, a local folder and S3 (a moto server):
immutable keys, pointers, tables, listing; every store fault in words."""

from __future__ import annotations

import os
import time

import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from kafer.cli import main as cli_main
from kafer.errors import LakeError
from kafer.lake import Lake


@pytest.fixture(params=["memory", "local", "s3"])
def store(request, tmp_path):
    """Each contract test on the three kinds of lake."""
    if request.param == "memory":
        return request.getfixturevalue("memory_lake")
    if request.param == "local":
        return Lake(str(tmp_path / "lake"))
    return request.getfixturevalue("s3_lake")


@pytest.fixture
def fresh_clients(s3_endpoint):
    """For tests that change the S3 environment: cached s3fs clients keep the old one."""
    import s3

    s3.forget_clients()
    yield
    s3.forget_clients()


# -- keys, pointers, tables ---------------------------------------------------------------------------
def test_immutable_writes_are_refused(store):
    store.write_bytes("raw/a/file.bin", b"one")
    store.write_bytes("raw/a/file.bin", b"one")  # the same bytes again: nothing to do
    with pytest.raises(LakeError, match=r"refusing to overwrite 'raw/a/file.bin' .* immutable"):
        store.write_bytes("raw/a/file.bin", b"two")
    assert store.read_bytes("raw/a/file.bin") == b"one"
    store.write_json("raw/a/meta.json", {"n": 1})
    assert store.read_json("raw/a/meta.json") == {"n": 1}
    with pytest.raises(LakeError, match="has no 'raw/b'"):
        store.read_bytes("raw/b")


def test_pointers_are_replaced(store):
    assert store.read_pointer("curated/CURRENT.json") is None
    store.write_pointer("curated/CURRENT.json", {"version": "v1"})
    store.write_pointer("curated/CURRENT.json", {"version": "v2"})
    assert store.read_pointer("curated/CURRENT.json") == {"version": "v2"}
    assert store.list("curated") == ["curated/CURRENT.json"]  # no temporary file left


def test_read_table_with_a_filter(store):
    store.write_table("t/1.parquet", pa.table({"car": ["a", "b"], "n": [1, 2]}))
    store.write_table("t/2.parquet", pa.table({"car": ["c", "d"], "n": [3, 4]}))
    table = store.read_table(["t/1.parquet", "t/2.parquet"], columns=["car"], filter=ds.field("n") > 1)
    assert sorted(table.column("car").to_pylist()) == ["b", "c", "d"]
    with pytest.raises(LakeError, match="no Parquet keys"):
        store.read_table([])
    store.write_bytes("t/bad.parquet", b"not parquet")
    with pytest.raises(LakeError, match="not readable Parquet"):
        store.read_table("t/bad.parquet")


def test_list_and_exists(store):
    assert store.list("") == [] and store.list("nothing") == []
    for key in ("b/2.json", "a/1.json", "b/sub/3.json"):
        store.write_json(key, {})
    assert store.list("") == ["a/1.json", "b/2.json", "b/sub/3.json"]
    assert store.list("b") == ["b/2.json", "b/sub/3.json"]
    assert store.exists("a/1.json") and not store.exists("a/9.json")


def test_check_passes_on_usable_lakes_and_leaves_nothing(store):
    store.check()
    store.check(write=True)
    assert store.list("") == []


# -- faults ------------------------------------------------------------------------------------------
def test_a_missing_bucket_is_named_and_never_created(s3_endpoint):
    import s3

    lake = Lake("s3://kafer-no-such-bucket/lake")
    expected = r"the lake s3://kafer-no-such-bucket/lake is in bucket 'kafer-no-such-bucket', which does not exist"
    for attempt in (lake.check, lambda: lake.write_bytes("raw/x", b"1"), lambda: lake.write_pointer("p.json", {}),
                    lambda: lake.list(""), lambda: lake.exists("x"), lambda: lake.read_pointer("p.json")):
        with pytest.raises(LakeError, match=expected):
            attempt()
    with pytest.raises(LakeError, match=expected):
        with lake.lock("lake", timeout=1):
            pass
    assert "kafer-no-such-bucket" not in s3.buckets()


def test_an_unreachable_store_is_said_fast(s3_endpoint, fresh_clients, monkeypatch):
    import s3

    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{s3.free_port()}")
    lake = Lake(f"s3://{s3.BUCKET}/down")
    started = time.monotonic()
    with pytest.raises(LakeError, match=r"cannot reach the lake s3://kafer-test/down \(EndpointConnectionError: .*\): "
                                        r"check the store's address"):
        lake.check()
    assert time.monotonic() - started < 5
    with pytest.raises(LakeError, match="cannot reach the lake"):
        Lake(f"s3://{s3.BUCKET}/down-too").read_pointer("models/PRODUCTION.json")


def test_missing_credentials_are_said(s3_endpoint, fresh_clients, monkeypatch):
    import s3

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    lake = Lake(f"s3://{s3.BUCKET}/nocred")
    started = time.monotonic()
    with pytest.raises(LakeError, match=r"no credentials for the lake s3://kafer-test/nocred .*: set AWS_ACCESS_KEY_ID"):
        lake.check()
    assert time.monotonic() - started < 5


def test_a_lake_at_a_file(tmp_path, s3_endpoint):
    import fsspec
    import s3

    afile = tmp_path / "README.md"
    afile.write_text("hello")
    with pytest.raises(LakeError, match=r"the lake .*README.md is a file, not a folder: point --lake"):
        Lake(str(afile))
    with pytest.raises(LakeError, match=r"lies below the file .*README.md, not a folder"):
        Lake(str(afile / "lake"))
    fsspec.filesystem("s3").pipe_file(f"{s3.BUCKET}/afile", b"x")
    with pytest.raises(LakeError, match=r"the lake s3://kafer-test/afile is a file \(an object\), not a folder"):
        Lake(f"s3://{s3.BUCKET}/afile").check()


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root may write anywhere")
def test_a_read_only_local_lake(tmp_path):
    root = tmp_path / "lake"
    root.mkdir()
    root.chmod(0o500)
    try:
        Lake(str(root)).check()
        with pytest.raises(LakeError, match="permission denied writing the lake"):
            Lake(str(root)).check(write=True)
    finally:
        root.chmod(0o700)


def test_store_faults_met_later_become_lake_errors(store, monkeypatch):
    import botocore.exceptions as boto

    store.write_json("a.json", {})

    def failing(error):
        def fail(*args, **kwargs):
            raise error
        return fail

    cases = [(PermissionError(13, "Access Denied"), r"permission denied: cannot read 'a.json' in the lake"),
             (boto.EndpointConnectionError(endpoint_url="http://s3.example"), "cannot reach the lake"),
             (boto.NoCredentialsError(), "no credentials for the lake"),
             (NotADirectoryError(20, "Not a directory"), "a file stands where a folder should be"),
             (OSError(28, "No space left on device"), "cannot read 'a.json' in the lake .*No space left")]
    for error, message in cases:
        monkeypatch.setattr(store.fs, "cat_file", failing(error))
        with pytest.raises(LakeError, match=message):
            store.read_json("a.json")
    monkeypatch.setattr(store.fs, "cat_file", failing(ValueError("a bug")))
    with pytest.raises(ValueError, match="a bug"):  # not a fault of the store: left for the CLI to call a bug
        store.read_json("a.json")


def test_the_cli_says_store_faults_in_one_line(s3_endpoint, tmp_path, capsys):
    afile = tmp_path / "README.md"
    afile.write_text("hello")
    for lake, words in (("s3://kafer-no-such-bucket/lake", "which does not exist"), (str(afile), "is a file")):
        assert cli_main(["status", "--lake", lake]) == 1
        err = capsys.readouterr().err
        assert words in err and lake in err and "internal error" not in err and len(err.strip().splitlines()) == 1
