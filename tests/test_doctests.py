"""The worked examples in the docstrings of the pure-logic modules run as tests."""
import doctest

import pytest

import rag.conversation
import rag.extraction
import rag.phrases
import rag.questions
import rag.text


@pytest.mark.parametrize("module", [rag.extraction, rag.conversation, rag.phrases, rag.questions, rag.text], ids=lambda m: m.__name__)
def test_docstring_examples_hold(module):
    result = doctest.testmod(module)
    assert result.attempted > 0
    assert result.failed == 0
