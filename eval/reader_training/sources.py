"""The training data's sources: which shared data files make up each, and their sha256.

A source is one kind of text (Wikipedia articles, product reviews, privacy policies, chat…):
figures are reported per source so that which sources help on documents like the users' can be
measured. The files lie in ../shared/data/train/ (its README lists them, with their licences and
sha256); SQuAD dev part A lies one folder up and is the source the headline figures come from.
"""
from __future__ import annotations

import re
from pathlib import Path

from eval.paths import shared_data

# SQuAD v1.1 and v2.0 dev part A: split into train/fit/validation articles as the first shipped
# reader was (data.load_dev_part_a); its validation articles are never trained on.
DEV_PART_A = "squad-dev-a"
SQUAD_V1_DEV = "squad-v1.1-dev-part-a.json"
SQUAD_V2_DEV = "squad-v2.0-dev-part-a.json"

# The eight sources of ../shared/data/train/ (files of one source share a kind of text, and a
# title occurring in two of its files is one document: SQuAD v1.1 and v2.0 train cover the same
# first articles).
TRAIN_SOURCES: dict[str, tuple[str, ...]] = {
    "squad-train": ("squad-v2.0-train-first-10-articles.json", "squad-v1.1-train-first-12-articles.json",
                    "squad-train-800-paragraphs.json", "squad-train-single-sentences.json"),
    "squadshifts-new-wiki": ("squadshifts-new-wiki.json",),
    "squadshifts-amazon": ("squadshifts-amazon-reviews.json",),
    "natural-questions": ("qed-natural-questions-train.json", "qed-natural-questions-dev.json"),
    "policyqa": ("policyqa-dev.json", "policyqa-test.json"),
    "molweni": ("molweni-test.json",),
    "friendsqa": ("friendsqa-dev.json", "friendsqa-test.json"),
    "fairytaleqa": ("fairytaleqa-explicit.json",),
}


def source_files(name: str) -> tuple[Path, ...]:
    """The data files of source `name`."""
    if name == DEV_PART_A:
        return shared_data(SQUAD_V1_DEV), shared_data(SQUAD_V2_DEV)
    if name not in TRAIN_SOURCES:
        raise ValueError(f"unknown source {name!r}; the sources are {', '.join([DEV_PART_A, *TRAIN_SOURCES])}")
    return tuple(shared_data("train", file) for file in TRAIN_SOURCES[name])


def published_sha256() -> dict[str, str]:
    """The sha256 the training data's README gives for each of its files ({} if it has none)."""
    readme = shared_data("train", "README.md")
    if not readme.is_file():
        return {}
    return {name: digest for digest, name in re.findall(r"^([0-9a-f]{64})\s+(\S+)$", readme.read_text(encoding="utf-8"), re.M)}


def data_sha256(names: list[str]) -> dict[str, str]:
    """Each file of these sources, by its path inside the shared data folder, with its sha256.

    Raises:
        ValueError: a file's sha256 differs from the one the data's README gives (the data
            changed: figures trained on it would not be comparable).
    """
    from eval.internals import reader as R

    published = published_sha256()
    recorded = {}
    for name in names:
        for path in source_files(name):
            digest = R.sha256(path)
            expected = published.get(path.name)
            if expected is not None and expected != digest:
                raise ValueError(f"{path} has sha256 {digest[:12]}…, the data's README says {expected[:12]}…: "
                                 "the data changed; restore it or update the README's list")
            recorded[path.relative_to(shared_data()).as_posix()] = digest
    return recorded
