"""Run the TLS fuzzer's full count: 100,000 inputs through the python backend's input path.

    python benchmarks/fuzz_tls.py            # 100,000 inputs (about 3 minutes here)
    python benchmarks/fuzz_tls.py -n 10000   # a quick run
Exits 1 if any exception other than summon.tls's typed errors was seen. The fuzzer itself
lives in tests/fuzz/tls_fuzzing.py, where the CI test runs a smaller count of it.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "fuzz"))

from tls_fuzzing import main

if __name__ == "__main__":
    sys.exit(main())
