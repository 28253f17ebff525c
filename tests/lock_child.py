"""Another process for the lock tests: ``python lock_child.py URL NAME hold|count [N] [ARG]``.

``hold [HEARTBEAT]``: take the lock, print ``{"pid", "took_over_from"}`` as one JSON line, then
hold it until stdin closes (or the process is killed); each line read meanwhile asks it to verify
the lock, answered ``held`` or ``lost: <message>``. ``count N [STALE_AFTER]``: N times, take the
lock, increment the pointer ``counter`` and log its stay in the lock as ``stays/<pid>-<i>.json``
(start and end, wall clock, and whether it took the lock over). ``KAFER_HOST`` in its environment
makes it a process of another machine. ``create N``: print ``ready``, wait for a line, then write
the keys ``NAME/000.json`` … as ``{"pid"}`` each, and print the JSON list of those it created (a key
another process created first is refused and left out).
"""

from __future__ import annotations

import json
import os
import sys
import time

from kafer.errors import LakeError, LockLost
from kafer.lake import Lake
from kafer.locks import hold


def main(url: str, name: str, mode: str, *args: str) -> None:
    lake = Lake(url)
    if mode == "hold":
        heartbeat = float(args[0]) if args else None
        with hold(lake, name, timeout=60, purpose=f"child {os.getpid()}", heartbeat=heartbeat,
                  details={"run": f"r-{os.getpid()}"}) as info:
            print(json.dumps({"pid": os.getpid(), "took_over_from": info.took_over_from}), flush=True)
            for _ in sys.stdin:
                try:
                    info.verify()
                    print("held", flush=True)
                except LockLost as exc:
                    print(f"lost: {exc}", flush=True)
        return
    if mode == "create":
        print("ready", flush=True)
        sys.stdin.readline()
        won = []
        for i in range(int(args[0])):
            key = f"{name}/{i:03d}.json"
            try:
                lake.write_json(key, {"pid": os.getpid()})
                won.append(key)
            except LakeError:
                pass
        print(json.dumps(won), flush=True)
        return
    stale_after = float(args[1]) if len(args) > 1 else 120.0
    for i in range(int(args[0])):
        with hold(lake, name, timeout=60, stale_after=stale_after, purpose=f"count {os.getpid()}") as info:
            start = time.time()
            value = lake.read_pointer("counter") or 0
            lake.write_pointer("counter", value + 1)
            lake.write_json(f"stays/{os.getpid()}-{i:03d}.json",
                            {"start": start, "end": time.time(), "took": info.took_over_from is not None})
    print("done", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
