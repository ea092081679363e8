"""Starting the real `rag` command as a child process the tests can stop with Ctrl-C."""
from __future__ import annotations

import signal


def default_sigint() -> None:
    """`preexec_fn` for a child stopped with SIGINT: it gets SIGINT's default handling.

    A shell starts its background jobs with SIGINT ignored and children inherit that, so a
    child started under `bash .ci/run &` would never raise KeyboardInterrupt: a test would
    wait out its timeout and kill it instead of seeing it stop as Ctrl-C stops it.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
