"""Serving on Ray: `rag serve`, a Ray Serve application over a (sharded) index.

Parts:

- `Embedding`, a deployment: the model (torch), embedding passages, and questions when the model
  has no ONNX export (one replica per `--replicas`);
- a searcher per shard with R replicas, in Ray actors the front starts: the shards are dealt into
  at most one group per CPU of the cluster (`group_shards`), and each of a group's R replicas
  (`_SearcherGroup`) opens its shards' folders and returns each shard's dense and BM25
  candidates (rag.shards.ShardSearcher); a question costs one call per group, to the group's
  replica with the fewest calls in flight. Why groups: each call costs ~1-1.5 ms of Ray's own
  time on the test machine, and a searcher is bound by the CPU, so processes beyond the CPUs add
  calls and no speed: on one 1-CPU node, 4 shards as 4 actors spent ~10 ms in the front's search
  stage, as one actor ~7 ms, against ~4 ms for the same 4 shards in process (its `Server-Timing`
  header, 60 questions). Why actors, not Serve deployments: a call through a Serve handle cost
  ~4 ms more than a Ray actor call there (a trivial method: 5.5 ms against 1.4 ms for one call,
  13 ms against 3.5 ms for 4 at once, on a 1-CPU local cluster). Ray restarts a dead searcher (on
  another node if its own died) and retries the call; the front owns them, so they stop with it;
- `Front`, the HTTP ingress deployment: `GET /ask?question=...` (or `POST /ask {"question": ...}`)
  embeds the question (with the ONNX export a local `rag ask` uses: one round trip fewer per
  question), asks every shard at once, merges the candidates exactly as an in-process sharded index does
  (rag.shards.ShardedRetriever) and runs the reader on top; it answers with the JSON of
  `Answer.to_dict()`, the shape `rag ask --json` prints, so `rag ask --server URL` and
  `Assistant.remote(URL)` give the answers a local `rag ask` gives.

The HTTP proxy binds 127.0.0.1 unless `--host` says otherwise, as `rag ui` does.
"""
from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import numpy as np

from ..errors import ClusterError, RagError
from . import SYSTEM_CONFIG, connect

# CPU each replica reserves (a searcher group: SEARCH_CPUS per shard it holds). Searching one shard
# and reading one answer are light next to the model's forward pass, so they take a tenth of a CPU
# each; on the cluster test's two 1-CPU nodes, 2 embedding replicas (half a CPU each), the front
# and 3 shards x 2 searchers fit.
EMBEDDING_CPUS = 0.5
SEARCH_CPUS = 0.1
FRONT_CPUS = 0.1
APP_NAME = "rag"
# Starting again once after a replica or controller died while starting (seen once in the cluster
# tests on a machine loaded 12-fold: "ActorDiedError" from serve.run).
START_ATTEMPTS = 2
USAGE = "GET /ask?question=... or POST /ask with {\"question\": \"...\"}"


class _RemoteEmbedder:
    """The Embedder interface `Assistant` uses: questions embedded here with the model's ONNX
    export when it has one, everything else by the Embedding deployment.

    A question sent to the Embedding deployment was one more handle round trip per ask; on the
    test machine the front then spent ~35 ms more per question than an in-process `ask` (see
    `rag bench --ray`). The ONNX export (rag.question_model) is the encoder a local `rag ask` uses,
    without torch, so the vectors, hence the answers, are the same as before.
    """

    def __init__(self, handle, model_name: str, dimension: int, questions=None):
        """
        Args:
            questions: a loaded `rag.question_model.QuestionEncoder`; None sends questions to `handle`.
        """
        self._handle = handle
        self._questions = questions
        self.model_name = model_name
        self.dimension = dimension

    def encode(self, texts: list[str], *, progress=False) -> np.ndarray:
        return np.asarray(self._handle.encode.remote(list(texts)).result(), dtype=np.float32)

    def encode_query(self, text: str) -> np.ndarray:
        return self.encode_questions([text])[0]

    def encode_questions(self, texts: list[str]) -> np.ndarray:
        # A follow-up embeds its question and the turns it continues at once.
        if self._questions is not None:
            return self._questions.encode(list(texts))
        return np.asarray(self._handle.encode_questions.remote(list(texts)).result(), dtype=np.float32)

    @property
    def questions_ready(self) -> bool:
        return True  # the deployment loaded its model before it reported ready

    def warm_up(self) -> None:
        pass  # as above: nothing left to load here


def _shard_records(index_dir: Path) -> list[dict]:
    """The shards to serve: a sharded index's, or a plain index as its only shard."""
    from .. import shards as sharding

    if sharding.is_sharded(index_dir):
        return sharding.written_shards(sharding.read_manifest(index_dir))
    return [{"folder": ".", "manifest_sha256": None}]


def _load_shard(index_dir: Path, record: dict):
    from .. import shards as sharding
    from .. import store

    if record["folder"] == ".":
        return store.load(index_dir)
    return sharding.load_shard(index_dir, record)


class _SearcherGroup:
    """One replica of a group of shards' searchers (a Ray actor), searching them in turn."""

    def __init__(self, index: str, records: list[dict]):
        from rag.shards import ShardSearcher

        self.searchers = [ShardSearcher(_load_shard(Path(index), record)) for record in records]

    def ready(self) -> bool:
        return True

    def candidates(self, query_terms, vector, depth, mode, idf, average_length) -> list[dict]:
        """Each shard's candidates, in the group's order."""
        return [s.candidates(query_terms, vector, depth, mode, idf, average_length) for s in self.searchers]


class _GroupReplicas:
    """The R replicas of one group's searchers, spread over the cluster's nodes; `pick` gives the
    one with the fewest calls in flight and `done` gives it back."""

    def __init__(self, index: str, records: list[dict], shards: list[int], replicas: int):
        """
        Args:
            records: every shard's record; the group serves those at positions `shards`.
        """
        import threading

        import ray

        self.shards = shards
        records = [records[i] for i in shards]

        # A searcher only reads its shards, so a call that died with its replica is safely retried
        # on the restarted one (max_task_retries); -1: as often as Ray restarts it.
        actor = ray.remote(num_cpus=SEARCH_CPUS * len(records), max_restarts=-1, max_task_retries=-1)(_SearcherGroup)
        self.replicas: list = [actor.options(scheduling_strategy="SPREAD").remote(index, records) for _ in range(replicas)]
        self._in_flight = [0] * replicas
        self._lock = threading.Lock()  # the front answers several questions at once, in threads

    def pick(self) -> int:
        with self._lock:
            chosen = min(range(len(self.replicas)), key=self._in_flight.__getitem__)
            self._in_flight[chosen] += 1
            return chosen

    def done(self, chosen: int) -> None:
        with self._lock:
            self._in_flight[chosen] -= 1


def group_shards(shards: int, cpus: int) -> list[list[int]]:
    """The shards (by position) each searcher group serves: at most one group per CPU of the
    cluster, shards dealt in turn. A searcher is bound by the CPU, so more processes than CPUs
    would only add calls; fewer would leave CPUs idle while shards wait their turn.

    >>> group_shards(4, 2)
    [[0, 2], [1, 3]]
    >>> group_shards(3, 8)
    [[0], [1], [2]]
    """
    groups = max(1, min(shards, cpus))
    return [list(range(g, shards, groups)) for g in range(groups)]


def cluster_cpus() -> int:
    """The CPUs of the cluster's live nodes."""
    import ray

    return int(ray.cluster_resources().get("CPU", 1))


def searchers_ready(groups: list[_GroupReplicas]) -> None:
    """Wait until every replica of every group has opened its shards (an error opening one is raised)."""
    import ray

    ray.get([replica.ready.remote() for group in groups for replica in group.replicas])


def ask_shards(groups: list[_GroupReplicas], arguments: tuple) -> list[dict]:
    """Every shard's candidates, in shard order; each group is asked before any answer is awaited,
    so they search at once."""
    import ray

    chosen = [group.pick() for group in groups]
    try:
        answers = ray.get([g.replicas[c].candidates.remote(*arguments) for g, c in zip(groups, chosen)])
    finally:
        for group, c in zip(groups, chosen):
            group.done(c)
    by_shard: dict[int, dict] = {}
    for group, answer in zip(groups, answers):
        by_shard.update(zip(group.shards, answer))
    return [by_shard[i] for i in range(len(by_shard))]


def build_app(index_dir: str, *, replicas: int = 1):
    """The Ray Serve application (not yet running) over the index at `index_dir`."""
    from ray import serve

    from .. import store

    index_path = Path(index_dir)
    records = _shard_records(index_path)
    model = store.read_manifest(index_path, any_format=True)["model"]

    class Embedding:
        def __init__(self, model_name: str):
            from rag.embedding import Embedder

            self.embedder = Embedder(model_name)
            self.embedder.model  # loaded before the replica reports ready  # noqa: B018

        def encode(self, texts: list[str]) -> np.ndarray:
            return self.embedder.encode(texts)

        def encode_questions(self, texts: list[str]) -> np.ndarray:
            # Questions as a local `rag ask` embeds them (the ONNX export): the same vectors, so
            # the server's answers are exactly the local ones.
            return self.embedder.encode_questions(texts)

    class Front:
        def __init__(self, index: str, embedding, records: list[dict], replicas: int):
            from rag import shards as sharding
            from rag.assistant import Assistant

            path = Path(index)
            if sharding.is_sharded(path):
                data = sharding.load(path)
            else:
                plain = _load_shard(path, {"folder": "."})
                data = sharding.ShardedIndexData(manifest=plain.manifest, shards=[plain])
            from rag.embedding import Embedder

            # The question model, exported once per machine (rag.question_model); None for a
            # model the export cannot reproduce, whose questions then go to the Embedding deployment.
            questions = Embedder(data.manifest["model"]).question_encoder()
            embedder = _RemoteEmbedder(embedding, data.manifest["model"], data.manifest["dimension"], questions)
            groups = [_GroupReplicas(index, records, shards, replicas) for shards in group_shards(len(records), cluster_cpus())]
            searchers_ready(groups)  # every shard opened before the front reports ready

            def fan_out(query_terms, vector, depth, mode, idf, average_length):
                return ask_shards(groups, (query_terms, vector, depth, mode, idf, average_length))

            retriever = sharding.ShardedRetriever(data, fan_out=fan_out)
            self.assistant = Assistant(path, data, embedder, retriever=retriever)

        async def __call__(self, request):
            from starlette.responses import JSONResponse

            if request.url.path.rstrip("/") != "/ask" or request.method not in ("GET", "POST"):
                return JSONResponse({"error": USAGE}, status_code=404)
            if request.method == "GET":
                # The question in the URL: no body to fetch. Ray Serve's proxy hands a body over
                # only when the replica asks for it, one more round trip (~2.5 ms measured here).
                question = request.query_params.get("question")
                if question is None:
                    return JSONResponse({"error": USAGE}, status_code=400)
            else:
                try:
                    body = await request.json()
                    question = body["question"]
                except (ValueError, KeyError, TypeError):
                    return JSONResponse({"error": "the body must be JSON: {\"question\": \"...\"}"}, status_code=400)
            started = time.perf_counter()
            try:
                # The reader and the blocking calls to the searchers run off the event loop.
                answer = await asyncio.to_thread(self.assistant.ask, question)
            except RagError as error:
                return JSONResponse({"error": str(error)}, status_code=400)
            # Where the front's time went (the W3C Server-Timing header, milliseconds): what a
            # client measures beyond "total" is the HTTP proxy and the transport.
            stages = {"embed": answer.timings.embed, "search": answer.timings.search, "answer": answer.timings.answer,
                      "total": time.perf_counter() - started}
            timing = ", ".join(f"{name};dur={seconds * 1000:.1f}" for name, seconds in stages.items())
            return JSONResponse(answer.to_dict(), headers={"Server-Timing": timing})

    # serve.deployment applied as a call, as the decorator would: mypy keeps a decorated class's
    # own type, and these are Deployments (with .options and .bind), named after the classes.
    embedding = serve.deployment(num_replicas=replicas, ray_actor_options={"num_cpus": EMBEDDING_CPUS})(Embedding)
    front = serve.deployment(ray_actor_options={"num_cpus": FRONT_CPUS})(Front)
    return front.bind(index_dir, embedding.bind(model), records, replicas)


# Ray Serve's proxy hands each request to the front over gRPC, straight to the replica, instead of
# as a Ray actor call: the data plane of Ray Serve's documented throughput-optimized mode
# (RAY_SERVE_THROUGHPUT_OPTIMIZED, Ray >= 2.55), taken alone, since that mode's other settings
# (user code on the replica's main thread, its own ingress ports) measured slower here. Measured
# with `rag serve` over a 4-shard index on a 1-CPU node: the time a client waits beyond the
# front's own stages was 4.8-5.2 ms in every run with it, 6.2-7.7 ms without. The controller
# passes its environment to the proxies and replicas it starts.
CONTROLLER_ENVIRONMENT = {"RAY_SERVE_USE_GRPC_BY_DEFAULT": "1"}


def deploy(index_dir: str, *, replicas: int = 1, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Start Ray Serve on the connected cluster, its HTTP proxy on host:port (a Serve instance
    already running there keeps its own settings), and run the application over `index_dir`;
    started over once if a replica or the controller died while starting.

    Raises:
        RagError: the index cannot be opened.
        ClusterError: the application failed to start, twice.
    """
    from ray import serve

    for attempt in range(1, START_ATTEMPTS + 1):
        try:
            serve.start(http_options={"host": host, "port": port},
                        controller_options={"runtime_env": {"env_vars": CONTROLLER_ENVIRONMENT}})
            serve.run(build_app(index_dir, replicas=replicas), name=APP_NAME, route_prefix="/")
            return
        except RagError:
            raise
        except Exception as error:
            if attempt == START_ATTEMPTS:
                raise ClusterError(
                    f"the server failed to start ({type(error).__name__}: {str(error).splitlines()[0][:200]})") from None
            serve.shutdown()  # a replica or the controller died while starting: start over once


def serve_index(index_dir: str, *, address: str | None = None, replicas: int = 1, host: str = "127.0.0.1",
                port: int = 8000, ready=None) -> None:
    """Run `rag serve` until interrupted: connect to (or start) Ray, deploy, print the URL.

    Args:
        address: a running cluster; None starts Ray on this machine for the server's lifetime.
        ready: called with the URL once every deployment answers (the CLI prints it).

    Raises:
        ConfigError: Ray is not installed, or `replicas` is not a positive whole number.
        ClusterError: the cluster cannot be reached or the application fails to start.
        IndexNotFoundError, IndexCorruptError: the index cannot be opened.
    """
    from ..errors import ConfigError

    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
        raise ConfigError(f"replicas must be a whole number of at least 1, not {replicas!r}")
    from .. import shards as sharding
    from .. import store

    path = Path(index_dir).resolve()
    # Refuse a missing or damaged index here, in one line, before anything starts.
    (sharding.load if sharding.is_sharded(path) else store.load)(path)
    if address is None:
        try:
            import ray
        except ImportError:
            raise ConfigError("Ray is not installed; pip install 'rag-assistant[cluster]'") from None
        # "local": a Ray of its own, even where `ray start` already runs one (which ray.init would
        # join, and refuse our settings for); --ray joins a running cluster.
        ray.init(address="local", include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
                 _system_config=SYSTEM_CONFIG)
    else:
        ray = connect(address)
    from ray import serve

    deploy(str(path), replicas=replicas, host=host, port=port)
    url = f"http://{host}:{port}"
    if ready:
        ready(url)
    try:
        while True:
            time.sleep(1)
    finally:
        serve.delete(APP_NAME)
        serve.shutdown()
        ray.shutdown()

