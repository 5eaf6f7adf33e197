"""A store's heavy paths, which a short recording run does not reach: KV_LOAD commits (a
batch flushed by the background thread past 1,000), packing (gc), a revert, a JSON merge.
Without KV_LOAD (the build's recording run) it only opens and closes its store."""

import os

from summon.devices import KV_RW


def main(store: KV_RW) -> int:
    n = int(os.environ.get("KV_LOAD", "0"))
    if not n:
        return 0
    for i in range(n):
        store.set(f"k/{i % 97}", b"%d" % i, message=f"commit {i}")
    with store.transaction("merge", policy="json") as tx:
        tx.set("doc", b'{"a": 1}')
    store.revert(store.history(limit=10)[-1].id)
    store.gc()  # every object into one pack; loose objects and old packs removed
    print("done", len(store.history()))
    return 0
