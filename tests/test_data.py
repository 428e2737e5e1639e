"""Evaluation texts: WikiText-2 rows rebuilt exactly, PTB and C4 joined as the SparseGPT/Wanda protocol."""

import hashlib

import pytest
from conftest import DATA_DIR

from fangprune.data import (
    c4_validation,
    protocol_windows,
    ptb_test,
    wikitext2_rows,
    wikitext2_test,
)

needs_data = pytest.mark.skipif(not (DATA_DIR / "wikitext-2-raw").exists(), reason="no local data directory")


def test_rows_layouts_hand_made():
    rows = ["", " = A = \n", "", " text .\n", ""]
    joined = "\n".join(rows)  # the layout of hf_test_rows_newline_joined.txt
    assert wikitext2_rows(joined, "rows_newline_joined") == rows
    raw = "".join(" \n" if r == "" else r for r in rows)  # wiki.test.raw: empty rows as " "
    assert wikitext2_rows(raw, "raw") == rows


@needs_data
def test_wikitext2_test_is_the_standard_join_of_4358_rows():
    text = wikitext2_test(str(DATA_DIR))
    assert "4358 rows" in text.source
    assert len(text.text) == 1_294_336
    assert hashlib.sha256(text.text.encode()).hexdigest() == (
        "696cca6b65a171b0a358a4be6732cdfdf2dd6164a32e20fd70e3c13fc4dfae83"
    )
    # both local files give the same rows
    raw = (DATA_DIR / "wikitext-2-raw" / "wiki.test.raw").read_text()
    rows_file = (DATA_DIR / "wikitext-2-raw" / "hf_test_rows_newline_joined.txt").read_text()
    assert wikitext2_rows(raw, "raw") == wikitext2_rows(rows_file, "rows_newline_joined")
    assert text.text.startswith("\n\n = Robert Boulter = \n\n\n\n\n Robert Boulter is")


@needs_data
def test_ptb_and_c4_texts():
    ptb = ptb_test(str(DATA_DIR))
    assert "3761 sentences" in ptb.source and ptb.text.startswith("no it was n't black monday but")
    assert len(ptb.text.split()) == 78_669  # the published word count of the PTB test set
    c4 = c4_validation(str(DATA_DIR))
    assert "1100 documents" in c4.source and "not byte-comparable" in c4.source
    assert protocol_windows("c4", None) == 256 and protocol_windows("c4", 32) == 32
    assert protocol_windows("ptb", None) is None
