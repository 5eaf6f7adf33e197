"""What a failed or interrupted command put in the store goes again.

A build out of space at its last step (the erofs image), or stopped with Ctrl-C, left its
layer and file list in the store, listed nowhere (not even as <none>) and taking room until
`summon rmi --dangling`. Store.written lists the blobs this process wrote that were not there
before; when the block fails, those nothing reaches and no other live process holds
(scratch.py's leases) are removed, under the store's lock, as gc would remove them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from summon.errors import SummonError
from summon.store import scratch
from summon.store.layout import Store


@contextlib.contextmanager
def undone_on_failure(store: Store) -> Iterator[None]:
    """Remove, if the block raises (KeyboardInterrupt too), the blobs it put in the store
    that nothing reaches."""
    start = len(store.written)
    try:
        yield
    except BaseException:
        discard(store, store.written[start:])
        del store.written[start:]
        raise


def discard(store: Store, digests: list[str]) -> None:
    """Remove those of digests nothing in the store reaches and no other process holds; a
    store too damaged to tell keeps them (the next gc decides)."""
    if not digests:
        return
    with contextlib.suppress(OSError, SummonError), store._locked():
        held = scratch.leased(store.tmp_root, scratch.own_dir(store.tmp_root))
        keep = store.reachable() | held
        for digest in dict.fromkeys(digests):
            if digest not in keep:
                store.blob_path(digest).unlink(missing_ok=True)
