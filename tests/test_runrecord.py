"""A run's record: its manifest is read, merged and written under the run's own lock."""

from __future__ import annotations

import threading

from kafer.runrecord import read_manifest, update_manifest


def test_updates_of_one_run_at_once_lose_nothing(tmp_path):
    """Two writers (a retrain and its notebook, or a recovery elsewhere) merging their own fields at once."""
    start = threading.Barrier(2)

    def write(prefix: str) -> None:
        start.wait()
        for i in range(40):
            update_manifest(tmp_path, "r1", **{f"{prefix}{i}": i})

    writers = [threading.Thread(target=write, args=(prefix,)) for prefix in "ab"]
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    manifest = read_manifest(tmp_path, "r1")
    assert {k for k in manifest if k != "run_id"} == {f"{p}{i}" for p in "ab" for i in range(40)}


def test_an_update_on_a_status_is_made_only_while_the_run_still_has_it(tmp_path):
    update_manifest(tmp_path, "r1", status="running")
    assert update_manifest(tmp_path, "r1", if_status="running", status="abandoned")["status"] == "abandoned"
    assert update_manifest(tmp_path, "r1", if_status="running", status="succeeded") is None  # settled first
    assert read_manifest(tmp_path, "r1")["status"] == "abandoned"
