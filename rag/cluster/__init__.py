"""Beyond one machine, on Ray (the `cluster` extra): indexing with Ray Data, serving with Ray Serve."""
from __future__ import annotations

import logging
import os

from ..errors import ClusterError, ConfigError

# Ray reports anonymous usage statistics to its developers unless told not to; this project
# sends nothing anywhere.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

# Ray's settings for a cluster this project starts itself (`rag serve` without --ray, the benchmark
# and test clusters). Ray starts its workers at niceness 15, so that its own raylet and GCS win any
# contention; then the server's replicas also lose the CPU to everything else at normal priority,
# the raylet and GCS's own work for each call included. Measured with `rag serve` over a 4-shard
# index on a 1-CPU node (60 questions, two pairs of runs): served p50 minus in-process p50 went
# from 15.4 and 15.4 ms to 11.8 and 11.6 ms with the workers at niceness 0, as the in-process
# ask runs. For a cluster started with `ray start`, set RAY_worker_niceness=0 in its environment.
SYSTEM_CONFIG = {"worker_niceness": 0}


def connect(address: str):
    """Attach this process to the Ray cluster at `address` ("auto", "HOST:PORT"); returns `ray`.

    Raises:
        ConfigError: Ray is not installed.
        ClusterError: no cluster answers there.
    """
    try:
        import ray
    except ImportError:
        raise ConfigError("Ray is not installed; pip install 'rag-assistant[cluster]'") from None
    if ray.is_initialized():
        return ray
    try:
        # log_to_driver: the workers' own logs stay in the cluster's log folder, not on the
        # user's terminal; errors still reach the driver as exceptions.
        ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR, configure_logging=True)
    except Exception as error:  # ConnectionError, ValueError...: whatever ray.init raises, one line
        raise ClusterError(f"cannot reach a Ray cluster at {address} ({type(error).__name__}: "
                           f"{str(error).splitlines()[0] if str(error) else ''}); start one with `ray start --head`") from None
    return ray
