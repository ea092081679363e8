"""The synthetic-store subprocess of `rag bench` (see `protocol`); users run `rag bench`."""
from __future__ import annotations

import sys

from .protocol import reply, task_from_argv
from .scaling import store_child

task = task_from_argv(sys.argv)
if task is None:
    sys.exit("usage: rag bench [--out FILE] [--passages N]")
reply(store_child(task))
