"""The HTTP server's tests: ws_wire.py's asserts are rewritten as a test module's are, so a
failing check there (a refused handshake, a masked server frame) shows what it compared."""

import pytest

pytest.register_assert_rewrite("ws_wire")
