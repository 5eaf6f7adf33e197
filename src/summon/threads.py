"""Helper threads and process signals: keep Ctrl-C and SIGTERM on the main thread."""

from __future__ import annotations

import signal

# Signals that arrive asynchronously, for the whole process.
_ASYNC_SIGNALS = signal.valid_signals() - {
    signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL, signal.SIGTRAP, signal.SIGSYS,
}  # fmt: skip


def block_signals_in_thread() -> None:
    """Make the kernel deliver process signals (Ctrl-C, SIGTERM) to other threads than this.

    Call first thing on every helper thread. Linux may hand a process signal to any thread
    that does not block it, and one caught on a helper thread does not interrupt the main
    thread's blocking call (waitpid in Instance.wait, say): the Ctrl-C would wait unseen.
    """
    signal.pthread_sigmask(signal.SIG_BLOCK, _ASYNC_SIGNALS)
