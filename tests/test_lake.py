"""The lake's contract, written once and run on memory://, a local folder and S3 (a moto server):
immutable keys, pointers, tables, listing; locks that die with their owner; every store fault in words."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from kafer import holders, locks
from kafer.cli import main as cli_main
from kafer.errors import LakeError, LockLost, LockReachWarning, LockTimeout, NestedLockError
from kafer.holders import judge_holder
from kafer.lake import Lake
from kafer.locks import hold, lock_holder

CHILD = Path(__file__).with_name("lock_child.py")


@pytest.fixture(params=["memory", "local", "s3"])
def store(request, tmp_path):
    """Each contract test on the three kinds of lake."""
    if request.param == "memory":
        return request.getfixturevalue("memory_lake")
    if request.param == "local":
        return Lake(str(tmp_path / "lake"))
    return request.getfixturevalue("s3_lake")


@pytest.fixture(params=["local", "s3"])
def shared(request, tmp_path):
    """Lakes another process can see (memory:// is one store per process)."""
    if request.param == "local":
        return Lake(str(tmp_path / "lake"))
    return request.getfixturevalue("s3_lake")


@pytest.fixture(params=["memory", "s3"])
def object_store(request):
    """Lakes whose lock is an object with a heartbeat."""
    return request.getfixturevalue("memory_lake" if request.param == "memory" else "s3_lake")


@pytest.fixture
def fresh_clients(s3_endpoint):
    """For tests that change the S3 environment: cached s3fs clients keep the old one."""
    import s3

    s3.forget_clients()
    yield
    s3.forget_clients()


def wait_until(condition, *, within: float = 10.0, what: str = "the condition"):
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {within} s")
        time.sleep(0.02)


class Child:
    """``tests/lock_child.py`` in another process, which inherits the S3 environment; ``host`` makes it
    a process of another machine."""

    def __init__(self, lake: Lake, name: str, *args: str, host: str | None = None):
        env = {**os.environ, "KAFER_HOST": host} if host else None
        self.proc = subprocess.Popen([sys.executable, str(CHILD), lake.url, name, *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.pid = self.proc.pid

    def line(self) -> str:
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"the child ended early: {self.proc.wait()} {self.proc.stderr.read()}")
        return line

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)  # reaped: no zombie keeps the pid

    def release(self) -> None:
        self.proc.stdin.close()
        assert self.proc.wait(timeout=60) == 0, self.proc.stderr.read()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.kill()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream and not stream.closed:
                stream.close()


@pytest.fixture
def children():
    made: list[Child] = []

    def spawn(lake, name, *args, host=None):
        made.append(Child(lake, name, *args, host=host))
        return made[-1]

    yield spawn
    for child in made:
        child.close()


def holding(child: Child) -> dict:
    """Wait for a ``hold`` child to hold its lock; what it reported."""
    return json.loads(child.line())


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


def test_a_local_file_is_written_once_as_an_immutable_key(store, tmp_path):
    one, same_size, longer = tmp_path / "one", tmp_path / "same-size", tmp_path / "longer"
    one.write_bytes(b"one" * 1000)
    same_size.write_bytes(b"one" * 999 + b"owt")
    longer.write_bytes(b"one" * 1001)
    store.write_file("raw/a/file.bin", str(one))
    store.write_file("raw/a/file.bin", str(one))  # the same bytes again: nothing to do
    for other in (same_size, longer):
        with pytest.raises(LakeError, match=r"refusing to overwrite 'raw/a/file.bin' .* immutable"):
            store.write_file("raw/a/file.bin", str(other))
    assert store.read_bytes("raw/a/file.bin") == one.read_bytes()
    assert store.list("raw") == ["raw/a/file.bin"]  # no temporary file left


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


# -- conditional writes ------------------------------------------------------------------------------
def test_conditional_writes_hold_only_for_the_version_seen(object_store):
    assert object_store.read_versioned("locks/x.lock") is None
    first = object_store.create_versioned("locks/x.lock", b"one")
    assert first and object_store.create_versioned("locks/x.lock", b"two") is None
    seen = object_store.read_versioned("locks/x.lock")
    assert (seen.data, seen.etag) == (b"one", first) and 0 <= seen.age < 5
    second = object_store.replace_versioned("locks/x.lock", b"two", first)
    assert second and second != first
    assert object_store.replace_versioned("locks/x.lock", b"three", first) is None  # changed since seen
    assert not object_store.delete_versioned("locks/x.lock", first)
    assert object_store.read_versioned("locks/x.lock").data == b"two"
    assert object_store.delete_versioned("locks/x.lock", second)
    assert object_store.replace_versioned("locks/x.lock", b"four", second) is None  # gone
    assert object_store.list("locks") == []


def test_a_store_without_conditional_writes_is_refused_a_lock():
    lake = Lake("http://127.0.0.1:9/lake")  # fsspec reaches it, but without If-Match: no safe lock
    with pytest.raises(LakeError, match=r"cannot lock: a lock on an object store needs conditional writes") as refused:
        with hold(lake, "lake", timeout=1):
            pass
    assert "a folder mounted from this store (gcsfuse, blobfuse2, rclone) locks nothing" in str(refused.value)


def test_two_writers_who_both_believe_a_key_is_new_leave_one_and_the_other_learns_it(shared, monkeypatch):
    """Both looked and found no decision number 2 (here: the store's answer lies); both write it at once.
    One record is kept whole, the other writer gets an error: no decision vanishes without one."""
    monkeypatch.setattr(shared.fs, "exists", lambda path, **kwargs: False)
    start, outcome = threading.Barrier(2), {}

    def write(by: str) -> None:
        start.wait()
        try:
            shared.write_json("registry/decisions/000002.json", {"seq": 2, "by": by})
            outcome[by] = "written"
        except LakeError as exc:
            outcome[by] = str(exc)

    writers = [threading.Thread(target=write, args=(by,)) for by in ("Ana", "Rui")]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    [winner] = [by for by, said in outcome.items() if said == "written"]
    [lost] = [said for said in outcome.values() if said != "written"]
    assert "refusing to overwrite 'registry/decisions/000002.json'" in lost and "another writer created it first" in lost
    assert shared.read_json("registry/decisions/000002.json") == {"seq": 2, "by": winner}
    monkeypatch.undo()
    assert shared.list("registry") == ["registry/decisions/000002.json"]  # no temporary file left
    if shared.is_local:
        assert os.listdir(shared.path("registry/decisions")) == ["000002.json"]


def test_two_processes_creating_the_same_keys_at_once_win_each_once(shared, children):
    racers = [children(shared, "race", "create", "40") for _ in range(2)]
    for racer in racers:
        assert racer.line().strip() == "ready"
    for racer in racers:
        racer.proc.stdin.write("go\n")
        racer.proc.stdin.flush()
    won = [set(json.loads(racer.line())) for racer in racers]
    assert won[0].isdisjoint(won[1]) and won[0] | won[1] == {f"race/{i:03d}.json" for i in range(40)}
    for racer, keys in zip(racers, won):
        assert all(shared.read_json(key) == {"pid": racer.pid} for key in keys)


# -- locks ----------------------------------------------------------------------------------------------
def test_two_threads_exclude_each_other(store):
    inside, most, start = [0], [0], threading.Barrier(2)
    guard = threading.Lock()

    def work():
        start.wait()
        for _ in range(6):
            with hold(Lake(store.url), "count", timeout=60, purpose="thread") as info:
                assert info.took_over_from is None
                with guard:
                    inside[0] += 1
                    most[0] = max(most[0], inside[0])
                store.write_pointer("counter", (store.read_pointer("counter") or 0) + 1)
                with guard:
                    inside[0] -= 1

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most[0] == 1 and store.read_pointer("counter") == 12
    assert store.list("locks") == []


def test_two_processes_exclude_each_other(shared, children):
    workers = [children(shared, "count", "count", "6") for _ in range(2)]
    for w in workers:
        assert w.line().strip() == "done"
        w.release()
    assert shared.read_pointer("counter") == 12
    stays = sorted((shared.read_json(k)["start"], shared.read_json(k)["end"]) for k in shared.list("stays"))
    assert len(stays) == 12 and all(a[1] <= b[0] for a, b in zip(stays, stays[1:]))
    assert shared.list("locks") == []


def test_a_killed_holder_is_taken_over_at_once(shared, children):
    child = children(shared, "retrain", "hold")
    holding(child)
    assert lock_holder(shared, "retrain")["state"] == "alive"
    child.kill()
    assert lock_holder(shared, "retrain")["state"] == "dead"
    started = time.monotonic()
    with hold(shared, "retrain", timeout=30, purpose="next retrain") as info:
        waited = time.monotonic() - started
        assert info.took_over_from["pid"] == child.pid and info.took_over_from["state"] == "dead"
        assert info.took_over_from["purpose"] == f"child {child.pid}"
        assert info.took_over_from["details"] == {"run": f"r-{child.pid}"}
    assert waited < 3.0
    assert shared.list("locks") == []


def test_the_next_holder_after_a_clean_release_took_over_nothing(shared, children):
    child = children(shared, "registry", "hold")
    holding(child)
    child.release()
    assert lock_holder(shared, "registry") is None
    with hold(shared, "registry", timeout=5) as info:
        assert info.took_over_from is None


def test_a_live_holder_is_never_taken_over(shared, children):
    """Even with a heartbeat far older than the waiter's staleness: on this machine its process is seen alive."""
    child = children(shared, "lake", "hold", "3600")
    holding(child)
    with pytest.raises(LockTimeout, match=rf"is busy: child {child.pid} \(pid {child.pid} on .*, alive, since .*\) "
                                          r"holds its lock 'lake'; waited 0.5 s"):
        with hold(shared, "lake", timeout=0.5, stale_after=0.01):
            pass
    child.release()
    with hold(shared, "lake", timeout=5) as info:
        assert info.took_over_from is None


def test_a_local_holder_on_another_machine_is_judged_by_its_os_lock(tmp_path, children, monkeypatch):
    """A holder on another machine never renews anything on a local lake: its OS lock alone says it lives,
    however small the staleness; once it died, the lock is free at once."""
    lake = Lake(str(tmp_path / "lake"))
    child = children(lake, "retrain", "hold", host="machine-a")
    holding(child)
    monkeypatch.setenv("KAFER_HOST", "machine-b")
    found = lock_holder(lake, "retrain", stale_after=0.01)
    assert found["state"] == "alive" and found["host"] == "machine-a" and found["details"] == {"run": f"r-{child.pid}"}
    with pytest.raises(LockTimeout, match=rf"busy: child {child.pid} \(pid {child.pid} on machine-a, alive"):
        with hold(lake, "retrain", timeout=0.3, stale_after=0.01):
            pass
    assert lock_holder(lake, "retrain", stale_after=0.01)["state"] == "alive"  # probing took nothing from it
    child.kill()
    assert lock_holder(lake, "retrain")["state"] == "dead"
    with hold(lake, "retrain", timeout=5) as info:
        assert info.took_over_from["host"] == "machine-a" and info.took_over_from["state"] == "dead"


def test_a_local_lock_held_by_this_very_process_is_alive(tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    assert lock_holder(lake, "lake") is None
    with hold(lake, "lake", purpose="mine"):
        assert lock_holder(lake, "lake")["state"] == "alive"
        outcome = []
        other = threading.Thread(target=lambda: outcome.append(_try_lock(lake, "lake", 0.2)))
        other.start()
        other.join()
        assert outcome == ["LockTimeout"]
    assert lock_holder(lake, "lake") is None


def test_a_thread_asking_twice_is_told_at_once(store):
    with hold(store, "registry", purpose="decide r1") as info:
        started = time.monotonic()
        with pytest.raises(NestedLockError,
                           match=r"is busy: decide r1 \(.*\) holds its lock 'registry', and this thread"):
            with hold(Lake(store.url), "registry", timeout=30):
                pass
        assert time.monotonic() - started < 5
        assert isinstance(NestedLockError("x"), LockTimeout)
        with hold(store, "lake", timeout=5):  # another lock nests
            pass
        outcome = []
        other = threading.Thread(target=lambda: outcome.append(_try_lock(store, "registry", 0.3)))
        other.start()
        other.join()
        assert outcome == ["LockTimeout"]  # another thread waits, then times out
        assert info.holder["purpose"] == "decide r1"
    with hold(store, "registry", timeout=5):
        pass


def _try_lock(lake: Lake, name: str, timeout: float) -> str:
    try:
        with hold(lake, name, timeout=timeout):
            return "held"
    except NestedLockError:
        return "NestedLockError"
    except LockTimeout:
        return "LockTimeout"


def _plant(lake: Lake, name: str, **record) -> dict:
    """A lock record as another machine's holder (or an older Käfer) left it."""
    lake.write_pointer(f"locks/{name}.lock", record)
    return record


def _dead_holder_here() -> dict:
    """The record of a holder on this machine whose process has ended."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    return {"owner": f"here:{gone.pid}:dead", "host": holders.this_host(), "pid": gone.pid,
            "boot": holders._boot_id(), "purpose": "retrain r-dead", "heartbeat_every": 30.0}


#: Staleness short enough for a test, long enough for S3's clock, which says times to the second.
SHORT = 1.0


def test_a_silent_holder_on_another_machine_is_taken_over_by_the_store_clock(object_store):
    """Its heartbeat says an hour ago, but only the store's clock counts: fresh until SHORT has passed there."""
    _plant(object_store, "retrain", owner="far:4242:abc", host="far-away-host", pid=4242, purpose="retrain r0",
           since=time.time() - 3600, since_utc="earlier", heartbeat=time.time() - 3600, heartbeat_every=0.1)
    assert lock_holder(object_store, "retrain", stale_after=60)["state"] == "alive"
    with hold(object_store, "retrain", timeout=30, stale_after=SHORT) as info:
        assert info.took_over_from["host"] == "far-away-host" and info.took_over_from["state"] == "stale"
        assert "no heartbeat for" in info.took_over_from["why"]
    assert object_store.list("locks") == []


def test_several_threads_taking_over_at_once_leave_one_holder(object_store):
    _plant(object_store, "lake", **_dead_holder_here())
    start, guard, inside, most, took = threading.Barrier(4), threading.Lock(), [0], [0], []

    def work():
        start.wait()
        with hold(Lake(object_store.url), "lake", timeout=30) as info:
            with guard:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
                took.append(info.took_over_from)
            object_store.write_pointer("counter", (object_store.read_pointer("counter") or 0) + 1)
            with guard:
                inside[0] -= 1

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most[0] == 1 and object_store.read_pointer("counter") == 4
    assert [t["purpose"] for t in took if t] == ["retrain r-dead"]  # exactly one holder took it over
    assert object_store.list("locks") == []


def test_several_processes_taking_over_at_once_leave_one_holder(shared, children):
    """Four processes find a lock its holder left when it died; one takes it over, the others wait their turn."""
    if shared.is_local:
        os.makedirs(shared.path("locks"), exist_ok=True)
        Path(shared.path("locks/lake.lock")).write_text(json.dumps(_dead_holder_here()))
    else:
        _plant(shared, "lake", **_dead_holder_here())
    workers = [children(shared, "lake", "count", "3") for _ in range(4)]
    for w in workers:
        assert w.line().strip() == "done"
        w.release()
    stays = [shared.read_json(k) for k in shared.list("stays")]
    assert shared.read_pointer("counter") == 12 and len(stays) == 12
    spans = sorted((s["start"], s["end"]) for s in stays)
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
    assert sum(s["took"] for s in stays) == 1
    assert shared.list("locks") == []


def test_a_fresh_lock_on_another_machine_is_respected(object_store):
    _plant(object_store, "retrain", owner="far:4242:abc", host="far-away-host", pid=4242, purpose="retrain r0",
           since=time.time() - 900, since_utc="earlier", heartbeat=time.time() - 900, heartbeat_every=30.0)
    with pytest.raises(LockTimeout, match=r"retrain r0 \(pid 4242 on far-away-host, alive, heartbeat \d+ s ago, since"):
        with hold(object_store, "retrain", timeout=0.3, stale_after=120):
            pass


def test_an_older_kafers_lock_is_taken_over(store):
    host = holders.this_host()
    record = {"owner": f"{host}:999999999:1234abcd", "purpose": "retrain old", "since": time.time() - 7 * 3600,
              "since_utc": "long ago"}
    if store.is_local:
        os.makedirs(store.path("locks"), exist_ok=True)
        Path(store.path("locks/retrain.lock")).write_text(json.dumps(record))
    else:
        _plant(store, "retrain", **record)
    with hold(store, "retrain", timeout=5) as info:
        assert info.took_over_from["purpose"] == "retrain old" and info.took_over_from["state"] == "dead"


def test_the_heartbeat_keeps_a_holder_elsewhere_alive(object_store, monkeypatch):
    with hold(object_store, "lake", heartbeat=0.05, purpose="ingest may") as info:
        first = lock_holder(object_store, "lake")["heartbeat"]
        wait_until(lambda: lock_holder(object_store, "lake")["heartbeat"] > first, what="a heartbeat")
        monkeypatch.setenv("KAFER_HOST", "another-host")  # the waiter cannot see the process
        outcome = []
        waiter = threading.Thread(target=lambda: outcome.append(
            _try_lock_with(object_store, "lake", timeout=2.5, stale_after=SHORT)))
        waiter.start()
        waiter.join()
        assert outcome[0][0] == "LockTimeout" and "ingest may" in outcome[0][1] and "alive, heartbeat" in outcome[0][1]
        assert not info.lost
        info.verify()


def _try_lock_with(lake: Lake, name: str, **options) -> tuple[str, str]:
    try:
        with hold(lake, name, **options):
            return ("held", "")
    except LockTimeout as exc:
        return (type(exc).__name__, str(exc))


def test_a_holder_whose_heartbeat_stalled_is_taken_over_and_stopped(object_store, monkeypatch):
    """Two holders are never both allowed to write: the stalled one's next verify refuses it."""
    def no_beats(lease, stop):
        stop.wait()

    monkeypatch.setattr(locks, "_heartbeat", no_beats)
    taken, old_done, report = threading.Event(), threading.Event(), {}

    def waiter():
        with hold(Lake(object_store.url), "lake", timeout=30, stale_after=SHORT, purpose="new") as info:
            report["took"] = info.took_over_from
            taken.set()
            old_done.wait(30)
            info.verify()
            report["new still holds"] = True

    with hold(object_store, "lake", purpose="old", heartbeat=0.05) as old:
        old.verify()  # a renewal: still its own
        monkeypatch.setenv("KAFER_HOST", "another-host")
        thread = threading.Thread(target=waiter)
        thread.start()
        assert taken.wait(30)
        with pytest.raises(LockLost, match=r"lock 'lake' of old was taken over by new \(pid \d+ on another-host, "
                                           r"alive.*\): .*Nothing more was written"):
            old.verify()
        assert old.lost
    assert lock_holder(object_store, "lake")["purpose"] == "new"  # the old holder left the new one's lock alone
    old_done.set()
    thread.join()
    assert report["new still holds"] and report["took"]["owner"] == old.holder["owner"]
    assert report["took"]["state"] == "stale" and object_store.list("locks") == []


def test_a_stalled_process_is_taken_over_and_stopped(s3_lake, children, monkeypatch):
    """A holder frozen (SIGSTOP) longer than the staleness loses its lock to another machine; woken, it is refused."""
    child = children(s3_lake, "retrain", "hold", "0.1", host="machine-a")
    holding(child)
    os.kill(child.pid, signal.SIGSTOP)
    try:
        monkeypatch.setenv("KAFER_HOST", "machine-b")
        with hold(s3_lake, "retrain", timeout=30, stale_after=SHORT, purpose="retrain on b") as info:
            assert info.took_over_from["pid"] == child.pid and info.took_over_from["state"] == "stale"
            os.kill(child.pid, signal.SIGCONT)
            child.proc.stdin.write("verify\n")
            child.proc.stdin.flush()
            assert child.line().startswith("lost: ")
            info.verify()
            assert lock_holder(s3_lake, "retrain")["purpose"] == "retrain on b"
    finally:
        os.kill(child.pid, signal.SIGCONT)
    child.release()
    assert s3_lake.list("locks") == []


def test_a_holder_whose_lock_was_replaced_notices_and_leaves_it(object_store):
    with hold(object_store, "lake", heartbeat=0.05) as info:
        _plant(object_store, "lake", owner="someone-else", host="far", pid=1, heartbeat=time.time())
        wait_until(lambda: info.lost, what="the holder noticing")
        with pytest.raises(LockLost):
            info.verify()
    assert lock_holder(object_store, "lake")["owner"] == "someone-else"  # its heartbeat and release left it alone


def test_a_local_holder_removes_only_its_own_record(tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    with hold(lake, "lake", purpose="mine"):
        assert lock_holder(lake, "lake")["purpose"] == "mine" and lake.list("locks") == ["locks/lake.lock"]
        Path(lake.path("locks/lake.lock")).write_text(json.dumps({"owner": "other", "purpose": "other"}))
    assert lock_holder(lake, "lake")["owner"] == "other"


def test_judging_holders(monkeypatch):
    me = holders.holder_record("memory://x", "lake", "me", heartbeat_every=30.0)
    assert judge_holder(me, age=3600) == ("alive", "alive")  # on this machine: its process, not its age
    gone = _dead_holder_here()
    assert judge_holder({**me, "pid": gone["pid"]}, age=0) == ("dead", "dead")
    if me["started"]:
        assert judge_holder({**me, "started": "1"}, age=0)[0] == "dead"  # the pid now names another process
    if me["boot"]:  # a restart, or another machine of this name: its age decides
        assert judge_holder({**me, "boot": "another-boot", "pid": gone["pid"]}, age=10, stale_after=120)[0] == "alive"
        assert judge_holder({**me, "boot": "another-boot"}, age=200, stale_after=120)[0] == "stale"
    if me["pidns"]:  # another container with the same host name: its pids are not ours to judge
        assert judge_holder({**me, "pidns": "pid:[1]", "pid": gone["pid"]}, age=0)[0] == "alive"
    far = {**me, "host": "far-away-host"}
    assert judge_holder(far, age=100, stale_after=120) == ("alive", "alive, heartbeat 100 s ago")
    assert judge_holder(far, age=100, stale_after=60)[0] == "stale"
    assert judge_holder({**far, "heartbeat_every": 60.0}, age=100, stale_after=60)[0] == "alive"  # its own pace
    assert judge_holder({"owner": None, "unreadable": True}, age=0)[0] == "dead"
    monkeypatch.setenv("KAFER_HOST", "far-away-host")  # the test hook: this process now plays that machine
    assert holders.this_host() == "far-away-host" and judge_holder(far, age=3600)[0] == "alive"


# -- shares whose locks stay on one machine -------------------------------------------------------------
MOUNTS = """\
22 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw
23 22 0:30 / /tmp rw,relatime shared:2 - tmpfs tmpfs rw
24 22 0:31 / /var/lib/docker/x rw,relatime shared:3 - overlay overlay rw,lowerdir=/a,upperdir=/b
40 22 0:45 / /mnt/plant rw,relatime shared:20 - nfs4 filer:/plant rw,vers=4.2,local_lock=none
41 22 0:46 / /mnt/old rw,relatime shared:21 - nfs filer:/old rw,vers=3,nolock,local_lock=all
42 22 0:47 / /mnt/smb rw,relatime shared:22 - cifs //nas/kafer rw,vers=3.1.1,nobrl
43 22 0:48 / /mnt/smb\\040ok rw,relatime shared:23 - cifs //nas/ok rw,vers=3.1.1
44 22 0:49 / /mnt/ssh rw,relatime shared:24 - fuse.sshfs me@host:/data rw
45 41 0:50 / /mnt/old/sub rw,relatime shared:25 - nfs4 filer:/sub rw,vers=4.1
46 22 0:51 / /mnt/gcs rw,nosuid,nodev shared:26 - fuse.gcsfuse plant-bucket rw,user_id=0
47 22 0:52 / /mnt/blob rw,nosuid,nodev shared:27 - fuse.blobfuse2 blobfuse2 rw,user_id=0
48 22 0:53 / /mnt/s3 rw,nosuid,nodev shared:28 - fuse.s3fs s3fs rw,user_id=0
49 22 0:54 / /mnt/rclone rw,nosuid,nodev shared:29 - fuse.rclone remote: rw,user_id=0
50 22 0:55 / /mnt/dav rw,nosuid,nodev shared:30 - fuse davfs rw,user_id=0
51 22 0:56 / /media/sf_lake rw,nodev shared:31 - vboxsf lake rw
52 22 0:57 / /mnt/c rw,noatime shared:32 - 9p drvfs rw,aname=drvfs;path=C:\\
53 22 0:58 / /mnt/ceph rw,relatime shared:33 - ceph 10.0.0.1:/ rw,name=kafer
54 22 0:59 / /mnt/lustre rw shared:34 - lustre mgs@tcp:/plant rw,flock
55 22 0:60 / /mnt/lustre-local rw shared:35 - lustre mgs@tcp:/old rw,localflock
"""


@pytest.mark.parametrize("path, problem", [
    ("/home/ana/lake", None),
    ("/tmp/lake", None),
    ("/var/lib/docker/x/lake", None),
    ("/mnt/plant/kafer/lake", None),
    ("/mnt/old/kafer", r"an NFS share \(filer:/old mounted on /mnt/old, option local_lock=all\) whose locks stay"),
    ("/mnt/old/sub/kafer", None),  # the nearest mount decides
    ("/mnt/smb/lake", r"an SMB share \(//nas/kafer mounted on /mnt/smb, option nobrl\)"),
    ("/mnt/smb ok/lake", None),
    ("/mnt/ssh/lake", r"an sshfs mount"),
    ("/mnt/gcs/lake", r"a gcsfuse mount of a Google Cloud Storage bucket \(plant-bucket mounted on /mnt/gcs\), "
                      r"whose locks are not known to reach other machines"),
    ("/mnt/blob/lake", r"a blobfuse2 mount of an Azure container"),
    ("/mnt/s3/lake", r"an s3fs mount of an S3 bucket"),
    ("/mnt/rclone/lake", r"an rclone mount"),
    ("/mnt/dav/lake", r"a fuse mount \(davfs mounted on /mnt/dav\)"),
    ("/media/sf_lake/kafer", r"a VirtualBox shared folder"),
    ("/mnt/c/Users/ana/lake", r"a 9p mount \(a VM's or WSL's shared folder\)"),
    ("/mnt/ceph/lake", None),
    ("/mnt/lustre/lake", None),
    ("/mnt/lustre-local/lake", r"a Lustre file system \(mgs@tcp:/old mounted on /mnt/lustre-local, option localflock\)"),
])
def test_locks_are_trusted_only_on_file_systems_known_to_carry_them_across_machines(path, problem):
    reach = locks.lock_reach(path, mountinfo=MOUNTS)
    assert reach.checked and ((reach.problem is None) if problem is None else re.match(problem, reach.problem)), reach


def test_a_lake_on_such_a_share_is_refused_unless_it_is_used_from_one_machine(tmp_path, monkeypatch):
    mounts = tmp_path / "mountinfo"
    mounts.write_text(f"50 1 0:51 / {tmp_path} rw - fuse.gcsfuse plant-bucket rw,user_id=0\n")
    monkeypatch.setattr(locks, "MOUNTINFO", str(mounts))
    lake = Lake(str(tmp_path / "lake"))
    with pytest.raises(LakeError, match=r"lies on a gcsfuse mount .*not known to reach other machines.*set "
                                        r"single_machine = true in kafer.toml"):
        with hold(lake, "lake", timeout=1):
            pass
    with hold(lake, "lake", timeout=1, single_machine=True) as info:
        assert info.took_over_from is None


def test_where_the_mounts_cannot_be_read_the_lock_s_reach_is_said_unchecked(tmp_path, monkeypatch, capsys):
    """Outside Linux (a lake on a Windows share or a synced folder) nothing says which file system holds it."""
    monkeypatch.setattr(locks, "MOUNTINFO", str(tmp_path / "no-such-mountinfo"))
    assert locks.lock_reach(str(tmp_path)) == locks.LockReach(False)
    lake = Lake(str(tmp_path / "lake"))
    with pytest.warns(LockReachWarning, match=r"whether its locks reach other machines was not checked.*a synced "
                                              r"folder \(OneDrive, Dropbox, Google Drive\)"):
        with hold(lake, "lake", timeout=1):
            pass
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with hold(lake, "lake", timeout=1):  # said once per lake
            pass
        with hold(Lake(str(tmp_path / "other")), "lake", timeout=1, single_machine=True):  # the user's word
            pass
    assert cli_main(["rebuild", "--lake", str(tmp_path / "third")]) == 1
    said = capsys.readouterr().err.splitlines()
    assert said[0].startswith("kafer rebuild: warning: the lake ") and "was not checked" in said[0]
    assert said[1].startswith("kafer rebuild: error: ") and len(said) == 2


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
        with hold(lake, "lake", timeout=1):
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
    with pytest.raises(LakeError,
                       match=r"no credentials for the lake s3://kafer-test/nocred .*: set AWS_ACCESS_KEY_ID"):
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
