"""The reader's training on tiny data: the split by document, checkpoint/resume of the loop, and
the cache of readings.

None needs the shared data: the SQuAD-format files are written here, the training loop is run
on a two-layer torch model whose result is compared step for step, and readings are the shipped
reader's.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.paths import ENV_SHARED_DATA
from eval.reader_training.data import load_source, read_squad_files
from eval.reader_training.settings import Settings, SourceChoice, parse_sources


def squad_file(path: Path, documents: dict[str, int], *, unanswerable: int = 0, prefix: str = "") -> None:
    """A SQuAD v2.0 file: each title one paragraph with this many questions (the first
    `unanswerable` of each document without an answer)."""
    data = []
    for title, questions in documents.items():
        context = f"{title} was founded in 1900. It has a river."
        qas = []
        for n in range(questions):
            impossible = n < unanswerable
            qas.append({"id": f"{prefix}{title}-{n}", "question": f"When was {title} founded ({n})?", "is_impossible": impossible,
                        "answers": [] if impossible else [{"text": "1900", "answer_start": context.index("1900")}]})
        data.append({"title": title, "paragraphs": [{"context": context, "qas": qas}]})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"version": "v2.0", "data": data}), encoding="utf-8")


@pytest.fixture
def shared(tmp_path, monkeypatch) -> Path:
    """Two sources in a shared data folder of our own: molweni (one file, unanswerable questions)
    and friendsqa (two files that share a title)."""
    monkeypatch.setenv(ENV_SHARED_DATA, str(tmp_path))
    squad_file(tmp_path / "train" / "molweni-test.json", {f"chat{i}": 7 for i in range(30)}, unanswerable=2)
    squad_file(tmp_path / "train" / "friendsqa-dev.json", {f"episode{i}": 5 for i in range(12)})
    squad_file(tmp_path / "train" / "friendsqa-test.json", {"episode3": 4, **{f"scene{i}": 5 for i in range(12)}}, prefix="t")
    return tmp_path


def test_a_document_is_in_one_part_and_the_held_out_slices_are_whole_documents(shared):
    settings = Settings(held_out_questions=20, held_out_min_titles=2)
    for name in ("molweni", "friendsqa"):
        corpus = load_source(SourceChoice(name), settings)
        parts = {part: {q.title for q in corpus.part(part)} for part in ("train", "fit", "validation")}
        assert not parts["train"] & parts["fit"] and not parts["train"] & parts["validation"] and not parts["fit"] & parts["validation"]
        for held in ("fit", "validation"):
            assert len(parts[held]) >= 2 and len(corpus.part(held)) >= 20
        assert len(corpus.questions) == sum(len(corpus.part(part)) for part in parts)
        assert all(q.id.startswith(f"{name}/") for q in corpus.questions)
        assert load_source(SourceChoice(name), settings) == corpus  # seeded: the same split again


def test_unanswerable_questions_stay_with_their_document(shared):
    corpus = load_source(SourceChoice("molweni"), Settings(held_out_questions=20))
    for part in ("train", "fit", "validation"):
        questions = corpus.part(part)
        assert sum(not q.answers for q in questions) == 2 * len({q.title for q in questions})


def test_a_title_in_two_files_of_a_source_is_one_document(shared):
    files = (shared / "train" / "friendsqa-dev.json", shared / "train" / "friendsqa-test.json")
    documents, questions = read_squad_files("friendsqa", files)
    assert documents["episode3"] == ("episode3 was founded in 1900. It has a river.",)  # the same paragraph, kept once
    assert sum(q.title == "episode3" for q in questions) == 9
    assert len({q.id for q in questions}) == len(questions)
    texts = {title: "\n\n".join(paragraphs) for title, paragraphs in documents.items()}
    assert all(texts[q.title][g.start : g.end] == g.text for q in questions for g in q.answers)


def test_a_cap_keeps_whole_training_documents_and_leaves_the_held_out_slices(shared):
    settings = Settings(held_out_questions=20)
    whole = load_source(SourceChoice("molweni"), settings)
    capped = load_source(SourceChoice("molweni", cap=15), settings)
    assert {part: capped.part(part) for part in ("fit", "validation")} == {part: whole.part(part) for part in ("fit", "validation")}
    assert len(capped.part("train")) == 21  # 3 documents of 7: the one that crosses the cap kept whole
    assert set(capped.documents) < set(whole.documents)


def test_a_cap_trains_on_the_documents_with_unanswerable_questions_first(shared):
    squad_file(shared / "train" / "fairytaleqa-explicit.json",
               {**{f"story{i}": 5 for i in range(20)}, "hard": 5, "harder": 5})
    data = json.loads((shared / "train" / "fairytaleqa-explicit.json").read_text())
    for entry in data["data"][-2:]:
        entry["paragraphs"][0]["qas"][0].update(is_impossible=True, answers=[])
    (shared / "train" / "fairytaleqa-explicit.json").write_text(json.dumps(data))
    corpus = load_source(SourceChoice("fairytaleqa", cap=10), Settings(held_out_questions=10))
    held = {q.title for part in ("fit", "validation") for q in corpus.part(part)}
    trained = {q.title for q in corpus.part("train")}
    assert {"hard", "harder"} - held <= trained and len(trained) == 2


def test_sources_are_named_with_a_cap_and_a_weight():
    assert parse_sources("policyqa:2000,molweni::2") == (SourceChoice("policyqa", 2000), SourceChoice("molweni", None, 2.0))
    with pytest.raises(ValueError, match="unknown source 'wikipedia'; choose among"):
        parse_sources("wikipedia")
    with pytest.raises(ValueError, match="name\\[:cap\\[:weight\\]\\]"):
        parse_sources("policyqa:many")


def test_the_command_line_options_become_the_run_settings():
    from eval.reader_training.cli import parser, settings_from

    settings = settings_from(parser().parse_args(["--sources", "squad-dev-a,molweni::2", "--negatives-unanswerable", "6"]))
    assert settings.negatives_unanswerable == 6
    assert settings.sources == (SourceChoice("squad-dev-a"), SourceChoice("molweni", None, 2.0))
    assert settings_from(parser().parse_args([])).negatives_unanswerable == Settings().negatives_unanswerable
    with pytest.raises(ValueError, match="must include squad-dev-a"):
        settings_from(parser().parse_args(["--sources", "molweni"]))


# -- checkpoint and resume ------------------------------------------------------------------------


class Stop(Exception):
    """A run killed without the chance to write a checkpoint (SIGKILL), as the loop sees it."""


def tiny_run(state: Path, *, steps: int = 10, stop_at: int | None = None, interrupt_after: int | None = None, identity=None):
    """Train a small model with dropout on fixed batches; its final weights."""
    import torch

    from eval.reader_training import loop

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 1))

        def forward(self, x, y):
            return type("Out", (), {"loss": torch.nn.functional.mse_loss(self.layers(x), y)})()

    torch.manual_seed(0)
    model = Model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / steps)
    inputs = torch.randn(steps, 3, 4, generator=torch.Generator().manual_seed(1))

    def batch_at(step: int):
        if step == stop_at:
            raise Stop
        return {"x": inputs[step], "y": inputs[step].sum(dim=1, keepdim=True)}, 3

    trained = loop.run(model, optimizer, schedule, loop.Plan(steps, checkpoint_every=3, eval_every=5), batch_at=batch_at,
                       evaluate=lambda: {"weight_sum": float(sum(p.detach().sum() for p in model.parameters()))},
                       state_path=state, identity=identity or {"run": 1}, interrupt_after=interrupt_after)
    return [p.detach().clone() for p in model.parameters()], trained


def test_a_run_interrupted_by_ctrl_c_resumes_where_it_stopped(tmp_path):
    import torch

    expected, whole = tiny_run(tmp_path / "whole.pt")
    with pytest.raises(KeyboardInterrupt):
        tiny_run(tmp_path / "state.pt", interrupt_after=7)
    weights, resumed = tiny_run(tmp_path / "state.pt")
    assert resumed.resumed_from == [7]
    assert all(torch.equal(a, b) for a, b in zip(weights, expected))
    assert resumed.curve == whole.curve and resumed.losses == whole.losses and resumed.pairs == 30


def test_a_killed_run_resumes_from_its_last_checkpoint(tmp_path):
    import torch

    expected, _ = tiny_run(tmp_path / "whole.pt")
    with pytest.raises(Stop):
        tiny_run(tmp_path / "state.pt", stop_at=8)
    weights, resumed = tiny_run(tmp_path / "state.pt")
    assert resumed.resumed_from == [6]  # checkpoints every 3 steps: the steps after 6 are trained again
    assert all(torch.equal(a, b) for a, b in zip(weights, expected))
    assert not (tmp_path / "state.pt.tmp").exists()


def test_a_checkpoint_of_other_settings_is_refused(tmp_path):
    from eval.reader_training.checkpoints import MismatchedCheckpoint

    with pytest.raises(KeyboardInterrupt):
        tiny_run(tmp_path / "state.pt", interrupt_after=2)
    with pytest.raises(MismatchedCheckpoint, match="written by a run with other run"):
        tiny_run(tmp_path / "state.pt", identity={"run": 2})


def test_cached_readings_are_those_of_the_windows_asked_even_when_two_lists_start_alike(tmp_path):
    """A question is read with several candidate lists (in scope, out of scope, deeper searches);
    a list that starts like an earlier one must get its own readings, from the cache too."""
    from eval.internals import reader as R
    from eval.reader_training.data import Question
    from eval.reader_training.export import onnx_reader
    from eval.reader_training.fitting import cached_reader

    read = onnx_reader(R.MODEL_DIR / "model.onnx")
    question = Question("q1", "Bridges", "When was the bridge opened?", ())
    opened = R.window("", "The bridge opened in May 1937.", "")
    painted = R.window("", "The bridge was painted orange in 1936.", "")
    crossed = R.window("", "Ferries crossed the strait before it.", "")
    cache = tmp_path / "readings.json"
    cached = cached_reader(read, cache)
    cached(question, [opened, painted])
    cached.save()
    for reader in (cached, cached_reader(read, cache)):  # while reading, and from the saved cache
        assert reader(question, [opened, crossed]) == read(question.text, [opened, crossed])
