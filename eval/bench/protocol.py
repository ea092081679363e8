"""How `rag bench` hands a synthetic-store measurement to a fresh process and reads its result.

Memory is measured in a process of its own, so that its peaks are clean: the parent runs
`python -m eval.bench --store-child '<StoreTask as JSON>'`, the child prints its measurements as
one JSON line, last on stdout.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Literal

CHILD_FLAG = "--store-child"
ACTIONS = ("write", "update", "open")


@dataclass(frozen=True)
class StoreTask:
    """One measurement in a fresh process: write a synthetic index, update one of its documents,
    or open and search it."""

    action: Literal["write", "update", "open"]
    passages: int  # how many synthetic passages the index holds
    dimension: int  # of the vectors (the model's)
    index_dir: Path  # the index folder, written by "write" and read by "open"
    inputs: Path  # JSON file: {"texts": corpus sentences, "questions": corpus questions} to build from
    model: str  # the model name recorded in the manifest

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "index_dir": str(self.index_dir), "inputs": str(self.inputs)})

    @classmethod
    def from_json(cls, text: str) -> "StoreTask":
        """Raises ValueError if `text` is not a task's JSON."""
        values = json.loads(text)
        expected = {f.name for f in fields(cls)}
        if not isinstance(values, dict) or set(values) != expected:
            raise ValueError(f"a store task has the keys {sorted(expected)}, not {text[:200]}")
        if values["action"] not in ACTIONS:
            raise ValueError(f"action must be one of {', '.join(ACTIONS)}, not {values['action']!r}")
        return cls(action=values["action"], passages=int(values["passages"]), dimension=int(values["dimension"]),
                   index_dir=Path(values["index_dir"]), inputs=Path(values["inputs"]), model=str(values["model"]))


def offline_env() -> dict[str, str]:
    """The environment of every process the benchmark starts: this one's, and never the network."""
    return {**os.environ, "HF_HUB_OFFLINE": "1"}


def run_in_child(task: StoreTask) -> dict:
    """Run `task` in a fresh Python process; its measurements.

    Raises:
        RuntimeError: the child failed (with the end of its stderr).
    """
    command = [sys.executable, "-m", "eval.bench", CHILD_FLAG, task.to_json()]
    done = subprocess.run(command, capture_output=True, text=True, env=offline_env(), check=False)
    if done.returncode != 0:
        raise RuntimeError(f"synthetic {task.action} failed: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def task_from_argv(argv: list[str]) -> StoreTask | None:
    """The task a child was started with, or None if `argv` is not a child's command line."""
    if len(argv) == 3 and argv[1] == CHILD_FLAG:
        return StoreTask.from_json(argv[2])
    return None


def reply(result: dict) -> None:
    """The child's answer to its parent: one JSON line on stdout."""
    print(json.dumps(result))
