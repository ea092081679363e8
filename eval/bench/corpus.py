"""The documents and questions `rag bench` indexes and asks: the bundled sample, plus SQuAD if present."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from ..paths import shared_data

SQUAD_FILE = shared_data("squad-v1.1-dev-part-a.json")
# SQuAD articles indexed beside the sample: about 1,900 sentence passages, so indexing runs for
# ~15-20 s and the throughput ratio is not dominated by fixed costs.
SQUAD_ARTICLES = 8
SQUAD_QUESTIONS = 20

# Questions about the bundled sample, including two it does not answer (abstention is timed too).
SAMPLE_QUESTIONS = (
    "When was the Brest peace treaty signed?",
    "Who led the Bolsheviks when they made peace with Germany in 1918?",
    "On what date did Hitler attack the Soviet Union?",
    "How many tanks did the Germans attack with?",
    "Who was the German ambassador to the Soviet Union?",
    "Through which country were the German diplomats going to travel home?",
    "What was the name of the German operation against Moscow?",
    "Where did Stalin shut himself away after the war broke out?",
    "When was the Treaty of Versailles signed?",
    "Who was the US president during the war?",
)


@dataclass(frozen=True)
class Corpus:
    """The documents indexed for the throughput, latency and reopen measurements."""

    paths: tuple[Path, ...]
    description: str
    questions: tuple[str, ...]
    squad_articles: tuple[str, ...] = ()  # titles of the SQuAD articles among the documents


def prepare_corpus(folder: Path) -> Corpus:
    """The sample document, plus SQuAD contexts written as text files into `folder` if available."""
    from rag import SAMPLE_DOCUMENT

    if not SQUAD_FILE.is_file():
        return Corpus(
            paths=(SAMPLE_DOCUMENT,),
            description=f"the bundled sample only ({SAMPLE_DOCUMENT.name}); {SQUAD_FILE} is absent, "
            "so the throughput ratio rests on few passages",
            questions=SAMPLE_QUESTIONS,
        )
    articles = json.loads(SQUAD_FILE.read_text(encoding="utf-8"))["data"][:SQUAD_ARTICLES]
    folder.mkdir(parents=True, exist_ok=True)
    for number, article in enumerate(articles):
        text = "\n\n".join(paragraph["context"] for paragraph in article["paragraphs"]) + "\n"
        name = re.sub(r"[^\w.-]+", "_", article["title"])
        (folder / f"{number:02d}-{name}.txt").write_text(text, encoding="utf-8")
    return Corpus(
        paths=(SAMPLE_DOCUMENT, folder),
        description=f"the bundled sample ({SAMPLE_DOCUMENT.name}) + the contexts of the first "
        f"{len(articles)} articles of {SQUAD_FILE.name}, one text file each",
        questions=SAMPLE_QUESTIONS + squad_questions(articles, SQUAD_QUESTIONS),
        squad_articles=tuple(article["title"] for article in articles),
    )


def squad_questions(articles: list[dict], count: int) -> tuple[str, ...]:
    """`count` questions spread evenly over the articles' paragraphs (the first of each paragraph)."""
    firsts = [p["qas"][0]["question"].strip() for a in articles for p in a["paragraphs"] if p["qas"]]
    step = max(1, len(firsts) // count)
    return tuple(firsts[::step][:count])
