"""The crash matrix's writer: commits small values to a store and prints each acknowledged
commit as "NUMBER ID" on stdout, until killed.

    python3 kv_crash_writer.py FOLDER FIRST LAST

Commit NUMBER sets key "k/<NUMBER % 100>" to b"value NUMBER" with the message
"commit NUMBER". Batches are small (and gc frequent) so kills land in flushes and packing
as well as in commits.
"""

from __future__ import annotations

import sys

from summon import kv


def main() -> None:
    folder, first, last = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    store = kv.open_folder(folder, batch_records=97, gc_packs=12)
    out = sys.stdout
    for n in range(first, last):
        commit = store.set(f"k/{n % 100}", b"value %d" % n, message=f"commit {n}")
        out.write(f"{n} {commit}\n")
        out.flush()
    store.close()
    out.write("done\n")
    out.flush()


if __name__ == "__main__":
    main()
