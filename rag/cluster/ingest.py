"""Indexing on Ray: passages embedded with Ray Data on an actor pool, shards written as Ray tasks.

The driver (the `rag index --ray` process) reads and splits the documents, as a local build
does, then hands Ray two jobs:

- embedding: a Ray Data dataset of (row, text) mapped by `map_batches` over a pool of actors,
  each holding one copy of the model (loaded once per actor, not per batch), 1 CPU each. The
  vectors stream back to the driver, which shows the progress bar as a local build does;
- writing: one Ray task per rewritten shard (`rag.shards.write_shard`), into the index folder,
  which every node must reach at the same path (one machine, or a shared file system).

The driver alone commits the top-level manifest, once every shard is written. Ray retries a
task or restarts an actor whose worker died; if the build fails anyway, nothing was committed
and the previous index is intact.
"""
from __future__ import annotations

import time

import numpy as np

from ..errors import ClusterError, ConfigError, RagError
from . import connect

# Passages per Ray Data batch: rag.embedding.CHUNK (512), a whole number of the model's batches
# of 64, so an actor pads sentences of similar length together as a local build does.
BATCH_ROWS = 512
# A shard write is retried this many times on another worker if its worker dies.
WRITE_RETRIES = 3


class _EmbedBatch:
    """A Ray Data actor: loads the model once, then embeds batch after batch."""

    def __init__(self, model: str):
        from rag.embedding import Embedder

        self.embedder = Embedder(model)
        self.embedder.model  # load now: the first batch should not wait for it  # noqa: B018

    def __call__(self, batch: dict) -> dict:
        texts = [str(t) for t in batch["text"]]
        return {"row": batch["row"], "vector": self.embedder.encode(texts)}


def ray_backend(address: str, *, model: str, workers: int | None = None):
    """The (embed, writer) pair `rag.shards.build` uses to build on the cluster at `address`.

    Raises:
        ConfigError: Ray is not installed, or `workers` is not a positive whole number.
        ClusterError: the cluster cannot be reached.
    """
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ConfigError(f"workers must be a whole number of at least 1, not {workers!r}")
    ray = connect(address)
    pool = workers or max(1, sum(1 for node in ray.nodes() if node.get("Alive")))

    def embed(texts: list[str], progress) -> np.ndarray:
        return embed_on_ray(texts, model=model, workers=pool, progress=progress)

    def writer(index_dir, plans, vectors, settings, chunking, generation):
        return write_shards_on_ray(index_dir, plans, vectors, settings, chunking, generation)

    return embed, writer


def embed_on_ray(texts: list[str], *, model: str, workers: int, progress=False) -> np.ndarray:
    """Embed `texts` with Ray Data on `workers` actors; rows come back in the order given.

    Raises:
        ClusterError: the job failed after Ray's retries.
    """
    import ray
    from ray.data import DataContext

    from rag.embedding import _bar

    context = DataContext.get_current()
    context.enable_progress_bars = False  # the driver draws the one bar a local build draws
    context.print_on_execution_start = False
    from rag.embedding import BATCH_SIZE

    # Longest first, as `Embedder.encode` orders them, in batches of whole model batches: each
    # forward pass then pads the same sentences together as a local build does, so the vectors
    # equal a local build's.
    order = np.argsort([-len(t) for t in texts], kind="stable")
    items = [{"row": int(i), "text": texts[i]} for i in order]
    # One block per batch, and at least one batch per actor: Ray Data bundles blocks up to
    # `batch_size` rows into one task, so fewer rows than workers x BATCH_ROWS would otherwise
    # all go to one actor.
    per_actor = -(-len(texts) // workers)
    rows = max(BATCH_SIZE, min(BATCH_ROWS, -(-per_actor // BATCH_SIZE) * BATCH_SIZE))
    dataset = ray.data.from_items(items, override_num_blocks=-(-len(texts) // rows)).map_batches(
        _EmbedBatch,
        fn_constructor_kwargs={"model": model},
        batch_size=rows,
        batch_format="numpy",
        # A fixed pool of `workers` actors, 1 CPU each. Ray Data restarts an actor whose node
        # died, and re-runs its unfinished batches, by default (max_restarts=-1).
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=1,
    )
    out: np.ndarray | None = None
    bar = _bar(len(texts)) if progress is True else None
    started, done = time.perf_counter(), 0
    try:
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            vectors = np.asarray(batch["vector"], dtype=np.float32)
            if out is None:
                out = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
            out[np.asarray(batch["row"], dtype=np.int64)] = vectors
            done += len(vectors)
            if bar is not None:
                bar.update(len(vectors))
            elif callable(progress):
                progress(done, len(texts), time.perf_counter() - started)
    except (KeyboardInterrupt, RagError):
        raise
    except Exception as error:
        raise ClusterError(f"embedding on the Ray cluster failed ({_reason(error)}); the previous index is unchanged") from None
    finally:
        if bar is not None:
            bar.close()
    if done != len(texts):
        raise ClusterError(f"the Ray cluster returned {done} of {len(texts)} vectors; the previous index is unchanged")
    # Callers never embed no texts (rag.shards skips the call), so a batch came back and set `out`.
    assert out is not None
    return out


def write_shards_on_ray(index_dir, plans, vectors: dict, settings: dict, chunking, generation: int):
    """Write each rewritten shard as a Ray task; returns their `ShardWritten` records."""
    import ray

    from rag.shards import write_shard
    from rag.splitting import split_document

    remote = ray.remote(write_shard).options(num_cpus=1, max_retries=WRITE_RETRIES, retry_exceptions=False)
    refs = []
    for shard in plans:
        # Each task gets only the vectors of its own shard's passages.
        texts = {p.text for d in shard.documents for p in split_document(d, chunking)}
        own = {t: vectors[t] for t in texts if t in vectors}
        refs.append(remote.remote(str(index_dir), shard, own, settings, chunking, generation))
    try:
        return ray.get(refs)
    except KeyboardInterrupt:
        raise
    except Exception as error:
        raise ClusterError(f"writing the shards on the Ray cluster failed ({_reason(error)}); "
                           "the previous index is unchanged") from None


def _reason(error: Exception) -> str:
    """The first line of a Ray error, whose full text is a remote traceback."""
    cause = getattr(error, "cause", None) or error
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[-1] if text else ''}"[:300]
