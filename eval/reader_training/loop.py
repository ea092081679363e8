"""The training loop: steps in a fixed order, a checkpoint every N steps, and resumption.

Which batch a step trains on is a function of the step alone (`batch_at`), so a run resumed from a
checkpoint at step k goes on exactly as the uninterrupted run would have: the model, optimizer,
schedule and torch's random state (dropout) are restored with it. Ctrl-C writes a checkpoint
before stopping; a killed run loses the steps since the last one.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import checkpoints
from .progress import Progress


@dataclass(frozen=True)
class Plan:
    steps: int
    checkpoint_every: int  # steps between checkpoints
    eval_every: int  # steps between validation points (and one at the last step)
    bf16: bool = False  # torch.autocast("cpu", dtype=torch.bfloat16) around the forward pass
    clip: float = 1.0  # gradient norm clipping
    log_every: int = 10


@dataclass
class Trained:
    steps: int
    curve: list[dict] = field(default_factory=list)  # one point per validation
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0  # training time over every session of the run
    cpu_seconds: float = 0.0  # the process's CPU time (all threads) training: what another machine's load does not change
    resumed_from: list[int] = field(default_factory=list)  # the steps sessions resumed at
    pairs: int = 0  # pairs trained on over every session


def run(model, optimizer, schedule, plan: Plan, *, batch_at: Callable[[int], tuple[dict[str, Any], int]],
        evaluate: Callable[[], dict] | None, state_path: Path, identity: dict,
        interrupt_after: int | None = None) -> Trained:
    """Train `model` for `plan.steps` steps from its checkpoint at `state_path`, if any.

    Args:
        batch_at: step → (the model's keyword arguments, labels included, and the pairs in it);
            the model's output has a `.loss`.
        evaluate: a validation point (a dict of figures), or None for none.
        identity: what decides the weights; a checkpoint of another identity is refused.
        interrupt_after: stop with KeyboardInterrupt after this many steps of this session (tests).

    Raises:
        checkpoints.MismatchedCheckpoint: the checkpoint is of another run.
        KeyboardInterrupt: after writing a checkpoint at the last finished step.
    """
    import torch

    done = Trained(plan.steps)
    state = checkpoints.load(state_path, identity)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        torch.set_rng_state(state["torch_rng"])
        done = Trained(plan.steps, state["curve"], state["losses"], state["seconds"], state["cpu_seconds"],
                       [*state["resumed_from"], state["step"]], state["pairs"])
        print(f"resuming at step {state['step']}/{plan.steps} from {state_path}", file=sys.stderr, flush=True)
    step = len(done.losses)
    trainable = [p for p in model.parameters() if p.requires_grad]
    session_started, session_cpu, session_pairs = time.perf_counter(), time.process_time(), 0
    first = step
    shown = Progress("training (this session)", plan.steps - first, "steps", every=0.0)  # its ETA: this session's rate

    def save() -> None:
        checkpoints.save(state_path, {
            "identity": identity, "step": step, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "schedule": schedule.state_dict(), "torch_rng": torch.get_rng_state(), "curve": done.curve, "losses": done.losses,
            "seconds": done.seconds + time.perf_counter() - session_started,
            "cpu_seconds": done.cpu_seconds + time.process_time() - session_cpu, "resumed_from": done.resumed_from,
            "pairs": done.pairs + session_pairs})

    try:
        while step < plan.steps:
            if interrupt_after is not None and step - first >= interrupt_after:
                raise KeyboardInterrupt
            inputs, pairs = batch_at(step)
            model.train()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=plan.bf16):
                out = model(**inputs)
            if torch.isfinite(out.loss):
                out.loss.float().backward()
                torch.nn.utils.clip_grad_norm_(trainable, plan.clip)
                optimizer.step()
            # else every pair of the batch was left out of the loss: nothing to learn from it
            schedule.step()
            optimizer.zero_grad()
            done.losses.append(float(out.loss.item()))
            session_pairs += pairs
            step += 1
            if step % plan.log_every == 0 or step == plan.steps:
                seconds = max(time.perf_counter() - session_started, 1e-9)
                cpu = max(time.process_time() - session_cpu, 1e-9)
                shown.update(step - first,
                             f"step {step}/{plan.steps}, loss {np.nanmean(done.losses[-plan.log_every:]):.3f}, "
                             f"{session_pairs / seconds:.1f} pairs/s, {session_pairs / cpu:.2f} pairs per CPU-s")
            if evaluate is not None and (step % plan.eval_every == 0 or step == plan.steps):
                point = {"step": step, "train_loss": round(float(np.nanmean(done.losses[-plan.eval_every:])), 4), **evaluate()}
                done.curve.append(point)
                print(f"validation {point}", file=sys.stderr, flush=True)
            if step % plan.checkpoint_every == 0 or step == plan.steps:
                save()
    except KeyboardInterrupt:
        save()
        print(f"interrupted: checkpoint at step {step}/{plan.steps} in {state_path}; the same command resumes",
              file=sys.stderr, flush=True)
        raise
    done.seconds += time.perf_counter() - session_started
    done.cpu_seconds += time.process_time() - session_cpu
    done.pairs += session_pairs
    return done
