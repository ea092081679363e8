"""A training run's state on disk: written atomically, read back to resume.

The state is one torch file (model, optimizer and schedule states, the step reached, the random
states, the losses and validation curve so far) and `identity`, what decides the weights (the
settings and a digest of the training pairs): a run resumes only from a state of the same
identity, or its weights would be nobody's.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any


class MismatchedCheckpoint(ValueError):
    """The checkpoint was written by a run with other settings or data."""


def save(path: Path, state: dict[str, Any]) -> None:
    """Write `state` to `path` through a temporary file and a rename: a run killed while writing
    leaves the previous checkpoint whole."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    torch.save(state, temporary)
    os.replace(temporary, path)


def load(path: Path, identity: dict) -> dict[str, Any] | None:
    """The state saved at `path`, or None when there is none.

    Raises:
        MismatchedCheckpoint: it was written with another identity (names what differs).
    """
    import torch

    if not path.is_file():
        return None
    # Our own file, written by `save`: it holds optimizer and random states besides tensors.
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state.get("identity") != identity:
        theirs = state.get("identity") or {}
        differ = sorted(k for k in set(theirs) | set(identity) if theirs.get(k) != identity.get(k))
        raise MismatchedCheckpoint(f"{path} was written by a run with other {', '.join(differ)}; "
                                   "rerun with the same settings to resume, or with --fresh to start over")
    return state
