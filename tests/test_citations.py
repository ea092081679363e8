"""Citations a person recognises: each sentence cited once however many files hold it (the
others named in `also_in`), and headings only where the document has real ones.

The sample is written as PDF (fpdf2), Word (python-docx, no heading styles) and HTML (no heading
elements) into one folder, as a manual saved in several formats is, and indexed once for the
module with the real model; the small heading documents are read by the real readers.
"""
from __future__ import annotations

import html
import json
from pathlib import Path

import pytest
from test_formats import FLAGSHIP, latin_1, sample_paragraphs

from rag import Assistant, Citation
from rag.cli import main
from rag.copies import sentence_key
from rag.documents import read_document
from rag.splitting import split_document

ANSWER_SENTENCE = "in March of the same year they signed the Brest Peace Treaty"


@pytest.fixture(scope="module")
def manual(tmp_path_factory) -> Assistant:
    """One index over the sample saved as PDF, Word and HTML, none of them with headings."""
    import docx
    from fpdf import FPDF

    folder = tmp_path_factory.mktemp("manual") / "docs"
    folder.mkdir()
    paragraphs = sample_paragraphs()
    word = docx.Document()
    for paragraph in paragraphs:
        word.add_paragraph(paragraph)
    word.save(str(folder / "manual.docx"))
    body = "".join(f"<p>{html.escape(p)}</p>\n" for p in paragraphs)
    (folder / "manual.html").write_text(f"<html><body>\n{body}</body></html>\n", encoding="utf-8")
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    for paragraph in paragraphs:
        pdf.multi_cell(0, 6, latin_1(paragraph))
        pdf.ln(4)
    pdf.output(str(folder / "manual.pdf"))
    return Assistant.build([folder], index_dir=folder.parent / "index")


def test_the_flagship_cites_each_sentence_once_naming_the_other_files(manual):
    answer = manual.ask(FLAGSHIP)

    assert answer.grounded and "March 1918" in answer.text
    keys = [sentence_key(c.text) for c in answer.citations]
    assert len(keys) == len(set(keys)), [c.text for c in answer.citations]
    names = {Path(s).name for s in manual.manifest["sources"]}
    assert names == {"manual.pdf", "manual.docx", "manual.html"}
    cited = next(c for c in answer.citations if ANSWER_SENTENCE in " ".join(c.text.split()))
    assert {Path(s).name for s in (cited.source, *cited.also_in)} == names
    for citation in answer.citations:
        assert citation.source not in citation.also_in
        assert len(set(citation.also_in)) == len(citation.also_in)
        for source in (citation.source, *citation.also_in):
            # Each file named holds the sentence (its text, whitespace folded).
            assert sentence_key(citation.text) in sentence_key(manual.source_text(source)), (source, citation.text)


def test_every_citation_is_verbatim_at_its_offsets_and_word_locations_name_no_heading(manual):
    answer = manual.ask(FLAGSHIP)
    assert len(answer.citations) >= 2  # the places copies took go to other sentences
    for citation in answer.citations:
        assert manual.source_text(citation.source)[citation.start : citation.end] == citation.text
    for passage in manual.passages:
        if passage.source.endswith((".docx", ".html")):
            assert passage.location is not None and "§" not in passage.location, passage


def test_the_first_copy_cited_is_the_likeliest_and_the_answer_points_into_it(manual):
    answer = manual.ask(FLAGSHIP)
    first = answer.citations[0]
    text = manual.source_text(first.source)
    assert first.start <= answer.direct_start < answer.direct_end <= first.end
    assert text[answer.direct_start : answer.direct_end] == answer.direct


def test_the_cli_prints_the_other_files_and_its_json_carries_also_in(manual, capsys):
    assert main(["ask", FLAGSHIP, "--index", str(manual.index_dir), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    also_in = [c["also_in"] for c in printed["citations"]]
    assert all(isinstance(names, list) for names in also_in)
    assert any(len(names) == 2 for names in also_in), also_in

    assert main(["ask", FLAGSHIP, "--index", str(manual.index_dir)]) == 0
    text = capsys.readouterr().out
    first = printed["citations"][0]
    assert f"      also in: {', '.join(Path(s).name for s in first['also_in'])}\n" in text


def test_a_citation_read_back_from_json_is_the_same_citation():
    citation = Citation("Signed in March.", "/d/a.pdf", 3, 19, 0.5, "p. 2", also_in=("/d/a.html", "/d/a.docx"))
    fields = json.loads(json.dumps(citation.to_dict()))
    assert fields["also_in"] == ["/d/a.html", "/d/a.docx"]
    assert Citation(**fields) == citation
    assert Citation("x", "/d/a.txt", 0, 1, 1.0).to_dict()["also_in"] == []


@pytest.mark.parametrize(("one", "other", "same"), [
    ("They signed the\ntreaty  in March.", "They signed the treaty in March.", True),
    ("The “Brest” treaty’s terms — harsh.", 'The "Brest" treaty\'s terms - harsh.', True),
    ("The ﬁrst treaty was signed.", "The first treaty was signed.", True),  # a PDF's ligature
    ("They signed the treaty.", "they signed the treaty.", False),
    ("They signed the treaty.", "They signed the treaty!", False),
])
def test_sentences_are_the_same_whatever_their_line_breaks_quotes_and_ligatures_but_not_case(one, other, same):
    assert (sentence_key(one) == sentence_key(other)) is same


# -- headings come only from the document's structure --------------------------------------------


def locations_of(path: Path) -> dict[str, str | None]:
    return {p.text: p.location for p in split_document(read_document(path))}


def test_a_word_file_without_heading_styles_is_located_by_paragraph_alone(tmp_path):
    import docx

    document = docx.Document()
    document.add_paragraph("Brest and after")  # short, first, like a title, but written as a paragraph
    document.add_paragraph("The treaty was signed in March 1918.")
    bold = document.add_paragraph()
    bold.add_run("Aftermath").bold = True  # looks like a heading, is not one
    document.add_paragraph("It was abrogated in November.")
    document.save(str(tmp_path / "plain.docx"))

    locations = locations_of(tmp_path / "plain.docx")
    assert read_document(tmp_path / "plain.docx").marks == ()
    assert locations["The treaty was signed in March 1918."] == "¶ 2"
    assert locations["It was abrogated in November."] == "¶ 4"


def test_word_headings_are_heading_and_title_styles_and_outline_levels(tmp_path):
    import docx
    from docx.oxml import OxmlElement
    from docx.oxml.ns import qn

    document = docx.Document()
    document.add_heading("Brest and after", level=0)  # the "Title" style
    document.add_paragraph("A short history.")
    document.add_heading("The treaty", level=1)
    document.add_paragraph("The treaty was signed in March 1918.")
    document.add_paragraph("Contents", style="TOC Heading")  # based on Heading 1, but body text
    document.add_paragraph("The army was rebuilt.")
    outlined = document.add_paragraph("Aftermath")  # no heading style, but an outline level 1
    level = OxmlElement("w:outlineLvl")
    level.set(qn("w:val"), "0")
    outlined._p.get_or_add_pPr().append(level)
    document.add_paragraph("It was abrogated in November.")
    document.save(str(tmp_path / "headed.docx"))

    locations = locations_of(tmp_path / "headed.docx")
    assert locations["A short history."] == "§ Brest and after, ¶ 1"
    assert locations["The treaty was signed in March 1918."] == "§ The treaty, ¶ 1"
    assert locations["The army was rebuilt."] == "§ The treaty, ¶ 3"
    assert locations["It was abrogated in November."] == "§ Aftermath, ¶ 1"


def test_html_headings_are_h1_to_h6_only(tmp_path):
    (tmp_path / "plain.html").write_text(
        "<html><head><title>Brest</title></head><body><p><b>Brest and after</b></p>"
        "<p>The treaty was signed in March 1918.</p></body></html>", encoding="utf-8")
    (tmp_path / "headed.html").write_text(
        "<body><h3>The treaty</h3><p>The treaty was signed in March 1918.</p></body>", encoding="utf-8")

    assert locations_of(tmp_path / "plain.html")["The treaty was signed in March 1918."] == "¶ 2"
    assert locations_of(tmp_path / "headed.html")["The treaty was signed in March 1918."] == "§ The treaty, ¶ 1"


def test_markdown_headings_are_atx_and_underlined_paragraphs_not_lists_or_quotes_before_a_rule(tmp_path):
    (tmp_path / "notes.md").write_text(
        "Brest and after\n\n- first item\n---\n\nThe treaty was signed in March 1918.\n\n"
        "> a quote\n***\n\n## The aftermath\n\nIt was abrogated in November.\n\nLater\n-----\n\nThe army was rebuilt.\n",
        encoding="utf-8")

    locations = locations_of(tmp_path / "notes.md")
    assert locations["The treaty was signed in March 1918."] == "¶ 3"  # no "§ - first item"
    assert locations["It was abrogated in November."] == "§ The aftermath, ¶ 1"
    assert locations["The army was rebuilt."] == "§ Later, ¶ 1"


def test_docstring_examples_hold():
    import doctest

    import rag.copies

    result = doctest.testmod(rag.copies)
    assert result.attempted > 0 and result.failed == 0


def test_the_copies_found_in_the_index_are_those_a_full_comparison_finds_in_one_index_and_in_shards(manual, tmp_path):
    import shutil

    import rag.shards
    import rag.store
    from rag.copies import MAX_PASSAGES_READ, Copies
    from rag.text import terms

    sharded_dir = tmp_path / "sharded"
    shutil.copytree(manual.index_dir, sharded_dir)
    sources = list(manual.manifest["sources"])
    # A source's shard comes from its path, which is a temporary folder's: take the first shard
    # count that puts the three files in more than one shard, so copies must be found across shards.
    count = next(s for s in range(2, 9) if len({rag.shards.shard_of(source, s) for source in sources}) > 1)
    Assistant.build([Path(s) for s in sources], index_dir=sharded_dir, shards=count)
    indexes = [rag.store.load(manual.index_dir), rag.shards.load(sharded_dir)]
    assert len(indexes[1].shards) > 1

    passages = list(manual.passages)
    holders: dict[str, set[str]] = {}
    for passage in passages:
        holders.setdefault(sentence_key(passage.text), set()).add(passage.source)
    frequency: dict[str, int] = {}
    for passage in passages:
        for term in set(terms(passage.text)):
            frequency[term] = frequency.get(term, 0) + 1
    looked_up = 0
    for index in indexes:
        copies = Copies(index)
        for passage in passages:
            found, expected = copies.sources(passage), holders[sentence_key(passage.text)]
            assert found <= expected, passage
            if any(frequency[t] <= MAX_PASSAGES_READ for t in terms(passage.text)):
                assert found == expected, passage
                looked_up += 1
    assert looked_up > len(passages)  # most sentences, in both indexes
    assert sum(len(sources) == 3 for sources in holders.values()) > len(holders) / 2  # the copies are there to find


def test_a_language_model_is_shown_each_sentence_once(manual):
    from rag.generation.prompt import excerpts_for

    excerpts = excerpts_for(manual.ask(FLAGSHIP), manual.search(FLAGSHIP))
    keys = [sentence_key(e.text) for e in excerpts]
    assert len(excerpts) > 3 and len(keys) == len(set(keys)), [e.text for e in excerpts]
