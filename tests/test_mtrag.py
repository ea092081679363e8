"""The MTRAG harness: conversations replayed three ways, on a tiny file in MTRAG's format."""
import json

from eval.mtrag import concatenated, load, main

DOCUMENTS = [
    {"document_id": "bridge-1", "title": "Varnholt Bridge", "text": "Varnholt Bridge\nThe Varnholt Bridge crosses "
     "the river Elsmere. It was designed by the engineer Miriam Okonkwo-Hale. The main span hangs from 212 steel cables."},
    {"document_id": "bridge-2", "title": "Varnholt Bridge", "text": "Varnholt Bridge\nA flood damaged the northern "
     "tower in 1951. Repairs took three years."},
    {"document_id": "harmonica-1", "title": "Glass harmonica", "text": "Glass harmonica\nThe glass harmonica was "
     "invented by Benjamin Franklin in 1761. It uses glass bowls turned by a foot pedal."},
]


def _task(conversation, number, questions, contexts, kind):
    turns = []
    for question in questions:
        turns += [{"speaker": "user", "text": question}, {"speaker": "agent", "text": "…"}]
    return {"task_id": f"{conversation}<::>{number}", "input": turns[:-1], "contexts": [{"document_id": c} for c in contexts],
            "Multi-Turn": [kind] if kind else [], "Answerability": ["ANSWERABLE"], "Collection": "mt-rag-clapnq-elser-512"}


def _file(tmp_path):
    asked = ["Who designed the Varnholt Bridge?", "When did a flood damage it?", "Tell me a joke"]
    tasks = [_task("c1", 1, asked[:1], ["bridge-1"], ""), _task("c1", 2, asked[:2], ["bridge-2"], "Follow-up"),
             _task("c1", 3, asked, [], "Follow-up"),
             _task("c2", 1, ["Who invented the glass harmonica?"], ["harmonica-1"], "")]
    path = tmp_path / "mtrag.json"
    path.write_text(json.dumps({"documents": DOCUMENTS, "tasks": tasks}), encoding="utf-8")
    return path


def test_conversations_are_read_in_turn_order_with_their_passages(tmp_path):
    dialogues, texts = load(_file(tmp_path))
    first = dialogues[0]
    assert [t.question for t in first.turns] == ["Who designed the Varnholt Bridge?", "When did a flood damage it?",
                                                "Tell me a joke"]
    assert first.passages == ["bridge-1", "bridge-2"] and first.collection == "clapnq"
    assert texts["harmonica-1"].startswith("Glass harmonica")


def test_the_concatenated_question_drops_the_oldest_questions_first():
    assert concatenated(["a?", "b?"], "c?") == "a? b? c?"
    long = "x" * 1998
    assert concatenated([long, "b?"], "c?") == "b? c?"


def test_both_pools_are_reported_for_every_method(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["--data", str(_file(tmp_path)), "--out", str(out)]) == 0
    table = capsys.readouterr().out
    for method in ("standalone", "conversation", "concatenated", "random sentence"):
        assert f"| {method} | first turn | 2 |" in table
        assert f"| {method} | follow-up | 1 |" in table  # the turn without references is not scored
    report = json.loads((out / "mtrag.json").read_text(encoding="utf-8"))
    assert set(report["turns"]) == {"conversation", "all"}
    # The first questions name their subject: every method cites the right passage.
    for turn in report["turns"]["all"]:
        if turn["turn"] == 1:
            assert all(m["top1"] for m in turn["methods"].values()), turn


def test_a_missing_data_file_is_skipped_with_a_message(tmp_path, capsys):
    assert main(["--data", str(tmp_path / "absent.json"), "--out", str(tmp_path / "out")]) == 0
    assert "skipped: no MTRAG data" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
