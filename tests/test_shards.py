"""Sharded indexes on one machine: the same answers as one index, updates that rewrite only the
shards they touch, and the previous index kept whole until the new manifest is committed."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import BRIDGE_TEXT, COMPANY, ORCHARD, ORCHARD_QUESTION, SAMPLE, run_rag

from rag import Assistant
from rag import shards as sharding
from rag.errors import ConfigError, IndexCorruptError, IndexStaleError

REPO = Path(__file__).resolve().parent.parent
SQUAD = REPO.parent / "shared" / "data" / "squad-v1.1-dev-part-a.json"


def _documents(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "orchard.txt").write_text(ORCHARD, encoding="utf-8")
    (folder / "company.txt").write_text(COMPANY, encoding="utf-8")
    (folder / "varnholt.txt").write_text(BRIDGE_TEXT, encoding="utf-8")
    shutil.copy(SAMPLE, folder / "sample.txt")
    return folder


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """The same four documents indexed once as one index and once in 3 shards."""
    root = tmp_path_factory.mktemp("shards")
    docs = _documents(root / "docs")
    single = Assistant.build([docs], index_dir=root / "single")
    sharded = Assistant.build([docs], index_dir=root / "sharded", shards=3)
    return single, sharded


QUESTIONS = [
    ORCHARD_QUESTION,
    "Who designed the Varnholt Bridge?",
    "How many steel cables hold the main span?",
    "When was the Brest peace treaty signed?",
    "Who was the German ambassador?",
    "How long did the march of Bravo Company last?",
    "What is the capital of Peru?",
]


def test_a_sharded_index_has_shard_folders_under_one_manifest(pair):
    _, sharded = pair
    manifest = json.loads((sharded.index_dir / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["layout"] == "sharded" and manifest["counts"]["shards"] == 3
    folders = [r["folder"] for r in manifest["shards"] if r["folder"]]  # a shard no source hashes to has none
    assert sorted(p.name for p in sharded.index_dir.iterdir() if p.is_dir()) == sorted(folders)
    for folder in folders:  # each shard is an ordinary index a plain open can read
        assert (sharded.index_dir / folder / "manifest.json").is_file()
    assert manifest["counts"]["passages"] == sum(r["passages"] for r in manifest["shards"])
    assert len(manifest["sources"]) == 4


@pytest.mark.parametrize("question", QUESTIONS)
def test_sharded_answers_and_citations_equal_one_index(pair, question):
    single, sharded = pair
    one, many = single.ask(question), sharded.ask(question)
    assert many.to_dict() == one.to_dict()


@pytest.mark.parametrize("question", QUESTIONS)
def test_dense_top_10_is_identical_to_one_index(pair, question):
    single, sharded = pair
    one = [h.passage.id for h in single.search(question, k=10, mode="dense")]
    many = [h.passage.id for h in sharded.search(question, k=10, mode="dense")]
    assert many == one


def test_opening_a_sharded_index_gives_the_same_answers(pair):
    _, sharded = pair
    reopened = Assistant.open(sharded.index_dir)
    for question in QUESTIONS:
        assert reopened.ask(question).to_dict() == sharded.ask(question).to_dict()
    assert reopened.status(verify=True)["verified_files"] > 3


def test_a_change_rewrites_only_the_shard_holding_it(tmp_path, verbatim):
    docs = _documents(tmp_path / "docs")
    index = tmp_path / "index"
    Assistant.build([docs], index_dir=index, shards=4)
    before = {r["folder"] for r in json.loads((index / "manifest.json").read_text())["shards"]} - {None}
    (docs / "orchard.txt").write_text(ORCHARD.replace("1920", "1921"), encoding="utf-8")
    updated = Assistant.build([docs], index_dir=index)  # stays sharded, 4 shards
    report = updated.last_build
    assert report.updated == [str((docs / "orchard.txt").resolve())] and len(report.unchanged) == 3
    after = {r["folder"] for r in updated.manifest["shards"]} - {None}  # None: a shard no source hashes to
    assert len(after - before) == 1 and len(before - after) == 1  # one shard folder replaced
    assert {p.name for p in index.iterdir() if p.is_dir()} == after  # the old one removed
    answer = updated.ask(ORCHARD_QUESTION)
    assert answer.text.startswith("1921")
    verbatim(answer)


def test_an_unchanged_sharded_index_writes_nothing(tmp_path):
    docs = _documents(tmp_path / "docs")
    Assistant.build([docs], index_dir=tmp_path / "index", shards=2)
    manifest = (tmp_path / "index" / "manifest.json").read_bytes()
    again = Assistant.build([docs], index_dir=tmp_path / "index")
    assert not again.last_build.written and again.last_build.embedded == 0
    assert (tmp_path / "index" / "manifest.json").read_bytes() == manifest


def test_a_failed_build_leaves_the_previous_sharded_index_intact(tmp_path):
    docs = _documents(tmp_path / "docs")
    index = tmp_path / "index"
    Assistant.build([docs], index_dir=index, shards=2)
    manifest = (index / "manifest.json").read_bytes()
    (docs / "orchard.txt").write_text(ORCHARD.replace("1920", "1921"), encoding="utf-8")

    def interrupt(done, total, seconds):  # the user presses Ctrl-C while embedding
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Assistant.build([docs], index_dir=index, progress=interrupt)
    assert (index / "manifest.json").read_bytes() == manifest
    (docs / "orchard.txt").write_text(ORCHARD, encoding="utf-8")
    assert Assistant.open(index).ask(ORCHARD_QUESTION).text.startswith("1920")


def test_a_damaged_shard_is_refused_naming_the_index_and_rebuilt_by_the_next_build(tmp_path):
    docs = _documents(tmp_path / "docs")
    index = tmp_path / "index"
    Assistant.build([docs], index_dir=index, shards=2)
    # A shard no document hashes to has no folder (the documents' paths decide which): take one that has.
    folder = next(s["folder"] for s in json.loads((index / "manifest.json").read_text())["shards"] if s["folder"])
    passages = next((index / folder).glob("passages-*.utf8"))
    passages.write_bytes(passages.read_bytes()[:-10])
    with pytest.raises(IndexCorruptError, match=f"the index at {index} is damaged.*{folder}"):
        Assistant.open(index)
    rebuilt = Assistant.build([docs], index_dir=index)
    assert rebuilt.last_build.rebuilt_because and rebuilt.ask(ORCHARD_QUESTION).grounded


def test_a_sharded_index_of_an_earlier_format_says_so_and_is_rebuilt_with_its_shard_count(tmp_path):
    docs = _documents(tmp_path / "docs")
    index = tmp_path / "index"
    Assistant.build([docs], index_dir=index, shards=2)
    manifest = json.loads((index / "manifest.json").read_text())
    manifest["sharded_format_version"] = sharding.SHARDED_FORMAT_VERSION - 1  # as the previous release wrote it
    (index / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexStaleError, match=rf"sharded format {sharding.SHARDED_FORMAT_VERSION - 1}, .*rag index PATH"):
        Assistant.open(index)

    rebuilt = Assistant.build([docs], index_dir=index)  # no --shards: the index's own count
    assert rebuilt.last_build.rebuilt_because and rebuilt.last_build.embedded == len(rebuilt.passages)
    assert len(json.loads((index / "manifest.json").read_text())["shards"]) == 2
    assert Assistant.open(index).ask(ORCHARD_QUESTION).text.startswith("1920")


@pytest.mark.parametrize("bad", [0, -1, 257, "3", 2.0, True])
def test_a_bad_shard_count_is_refused(tmp_path, bad):
    with pytest.raises(ConfigError, match="shards must be a whole number from 1 to 256"):
        Assistant.build([SAMPLE], index_dir=tmp_path / "index", shards=bad)


def test_rag_index_shards_then_ask(tmp_path):
    docs = _documents(tmp_path / "docs")
    index = tmp_path / "index"
    built = run_rag("index", str(docs), "--index", str(index), "--shards", "2", cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    asked = run_rag("ask", ORCHARD_QUESTION, "--index", str(index), "--json", cwd=tmp_path)
    assert asked.returncode == 0, asked.stderr
    assert json.loads(asked.stdout)["answer"].startswith("1920")


def test_bm25_top_10_overlaps_one_index_on_squad(tmp_path):
    """BM25 over shards against one index, on SQuAD articles: measured with each shard's own
    statistics (reported) and with the collection's (the default, asserted)."""
    if not SQUAD.is_file():
        pytest.skip(f"needs SQuAD at ../shared/data/{SQUAD.name} (outside the repository)")
    from eval.squad import load_articles, write_documents

    articles, _ = load_articles(SQUAD, articles=4, questions=15)
    write_documents(articles, tmp_path / "docs")
    single = Assistant.build([tmp_path / "docs"], index_dir=tmp_path / "single")
    sharded = Assistant.build([tmp_path / "docs"], index_dir=tmp_path / "sharded", shards=3)
    own_statistics = sharding.ShardedRetriever(sharding.load(tmp_path / "sharded"), corpus_statistics=False)
    overlaps, own_overlaps = [], []
    for question in [q.text for a in articles for q in a.questions]:
        one = {h.passage.id for h in single.search(question, k=10, mode="bm25")}
        many = {h.passage.id for h in sharded.search(question, k=10, mode="bm25")}
        own = {h.passage.id for h in own_statistics.search(question, None, k=10, mode="bm25")}
        overlaps.append(len(one & many) / max(1, len(one)))
        own_overlaps.append(len(one & own) / max(1, len(one)))
        dense_one = [h.passage.id for h in single.search(question, k=10, mode="dense")]
        assert [h.passage.id for h in sharded.search(question, k=10, mode="dense")] == dense_one
    overlap, own_overlap = sum(overlaps) / len(overlaps), sum(own_overlaps) / len(own_overlaps)
    print(f"\nBM25 top-10 overlap with one index, 3 shards, {len(overlaps)} SQuAD questions: "
          f"collection statistics {overlap:.3f}, each shard's statistics {own_overlap:.3f}")
    assert overlap >= 0.95


def test_shard_of_is_stable_and_spreads_sources():
    counts = [0] * 4
    for i in range(400):
        counts[sharding.shard_of(f"/docs/{i}.txt", 4)] += 1
    assert min(counts) > 60  # 100 expected each


@pytest.mark.parametrize("shards, cpus", [(4, 1), (4, 2), (3, 2), (3, 8), (1, 3)])
def test_rag_serve_deals_the_shards_into_one_searcher_group_per_cpu(shards, cpus):
    from rag.cluster.serve import group_shards

    groups = group_shards(shards, cpus)
    assert len(groups) == min(shards, cpus)  # a question costs one call per group
    assert sorted(i for group in groups for i in group) == list(range(shards))
    assert max(map(len, groups)) - min(map(len, groups)) <= 1
