"""The SQuAD harness: three retrieval modes compared in one run, on a small SQuAD-format file."""
import json

from eval.squad import run_squad

ARTICLES = {
    "version": "v2.0",
    "data": [
        {
            "title": "Varnholt Bridge",
            "paragraphs": [
                {
                    "context": "The Varnholt Bridge crosses the river Elsmere. It was designed by the engineer "
                    "Miriam Okonkwo-Hale. The main span hangs from 212 steel cables.",
                    "qas": [
                        {"id": "b1", "question": "Who designed the Varnholt Bridge?", "is_impossible": False,
                         "answers": [{"text": "Miriam Okonkwo-Hale", "answer_start": 0}]},
                        {"id": "b2", "question": "How many steel cables hold the main span?", "is_impossible": False,
                         "answers": [{"text": "212", "answer_start": 0}]},
                        {"id": "b3", "question": "When was the Treaty of Versailles signed?", "is_impossible": True,
                         "answers": []},
                    ],
                }
            ],
        },
        {
            "title": "Glass harmonica",
            "paragraphs": [
                {
                    "context": "The glass harmonica was invented by Benjamin Franklin in 1761. It uses a series of "
                    "glass bowls turned by a foot pedal.",
                    "qas": [
                        {"id": "g1", "question": "Who invented the glass harmonica?", "is_impossible": False,
                         "answers": [{"text": "Benjamin Franklin", "answer_start": 0}]},
                    ],
                }
            ],
        },
    ],
}


def test_three_modes_are_reported_side_by_side(tmp_path, capsys):
    path = tmp_path / "tiny-squad.json"
    path.write_text(json.dumps(ARTICLES), encoding="utf-8")

    assert run_squad(path, articles=None, questions=None, out=tmp_path / "out") == 0

    table = capsys.readouterr().out
    assert "| metric | hybrid | bm25 | dense |" in table
    report = json.loads((tmp_path / "out" / "squad-report.json").read_text(encoding="utf-8"))
    assert report["run"]["answerable"] == 3 and report["run"]["unanswerable"] == 1
    assert set(report["modes"]) == {"hybrid", "bm25", "dense"}
    for mode in report["modes"].values():
        assert 0.0 <= mode["cited_recall@3"] <= 1.0
    # The answers are in the documents: hybrid finds every one of them.
    assert report["modes"]["hybrid"]["retrieved_recall@3"] == 1.0
