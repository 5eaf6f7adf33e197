"""Test script entry: running it (which the trace must not do) writes a marker file."""

import os
import shlex

with open(os.environ["SUMMON_TEST_MARKER"], "w") as f:
    f.write("ran")


def later() -> None:
    import zipfile

    print(zipfile)


if __name__ == "__main__":
    import wave

    print(shlex, wave)
