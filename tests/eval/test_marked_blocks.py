"""Table scripts rewrite a document's marked block only when told which: an exploratory run prints."""
import pytest

from speechtok.eval.errors import EvalError
from speechtok.eval.summary import publish_block

DOC = "intro\n<!-- a:begin -->\nold a\n<!-- a:end -->\nmiddle\n<!-- b:begin -->\nold b\n<!-- b:end -->\n"


def test_a_marker_rewrites_its_block_and_nothing_else(tmp_path, capsys):
    doc = tmp_path / "doc.md"
    doc.write_text(DOC)
    publish_block(doc, "b", "new b\n| x |")
    assert doc.read_text() == DOC.replace("old b", "new b\n| x |")
    assert "new b\n| x |" in capsys.readouterr().out  # printed as well


def test_without_a_marker_the_block_is_printed_and_the_document_untouched(tmp_path, capsys):
    doc = tmp_path / "doc.md"
    doc.write_text(DOC)
    publish_block(doc, None, "exploratory table")
    assert doc.read_text() == DOC
    assert "exploratory table" in capsys.readouterr().out


def test_an_unknown_marker_is_refused_and_the_document_untouched(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text(DOC)
    with pytest.raises(EvalError, match="markers <!-- c:begin -->"):
        publish_block(doc, "c", "table")
    assert doc.read_text() == DOC
