"""The deployment table: one row per exported GGUF, engine perplexity and speed joined on the file's key."""

import pytest
from conftest import markdown_cells

from fangprune.report.deployment import deployment_frame, deployment_markdown


def _export(method, sp, mb, arch="deci"):
    return {"model": "m", "method": method, "sparsity": sp, "gguf_type": "q8_0", "bytes": mb * 1e6, "seconds": 9.0,
            "architecture": arch, "f16_fallbacks": []}


def _ppl(method, sp, ppl, torch_ppl):
    return {"model": "m", "method": method, "sparsity": sp, "gguf_type": "q8_0", "dataset": "wikitext2",
            "ppl": ppl, "torch_ppl": torch_ppl, "rel_diff": ppl / torch_ppl - 1, "windows": 32}


def _speed(method, sp, ratios):
    spread = {"median": sorted(ratios)[len(ratios) // 2], "min": min(ratios), "max": max(ratios), "n": len(ratios)}
    return {"model": "m", "method": method, "sparsity": sp, "gguf_type": "q8_0", "prompt_speedup": spread,
            "gen_speedup": {**spread, "median": 1.25}, "repeats": len(ratios), "threads": 2,
            "flop_ratio_limit": 1.6, "engine": "llama.cpp via llama-cpp-python 0.3.36"}


def test_rows_join_on_the_file_and_keep_the_config_order_dense_first():
    exports = [_export("o-fang", 0.4, 185.9), _export("obc", 0.4, 186.0, "llama"), _export("dense", 0.0, 144.8, "llama"),
               _export("o-fang", 0.2, 220.0)]
    ppl = [_ppl("dense", 0.0, 28.988, 28.816), _ppl("o-fang", 0.4, 78.328, 77.762), _ppl("o-fang", 0.2, 40.0, 39.9),
           _ppl("obc", 0.4, 90.0, 89.0)]
    speed = [_speed("o-fang", 0.4, [1.5, 1.4, 1.6]), _speed("obc", 0.4, [1.2, 1.1, 1.3]),
             _speed("o-fang", 0.2, [1.1, 1.2, 1.0])]
    frame = deployment_frame(exports, ppl, speed)
    assert list(zip(frame["method"], frame["sparsity"])) == [("dense", 0.0), ("o-fang", 0.2), ("o-fang", 0.4),
                                                             ("obc", 0.4)]
    row = frame.iloc[2]
    assert row["mb"] == pytest.approx(185.9) and row["wikitext2_llamacpp"] == 78.328
    assert row["wikitext2_rel"] == pytest.approx(78.328 / 77.762 - 1)
    assert (row["prompt_median"], row["prompt_min"], row["prompt_max"]) == (1.5, 1.4, 1.6)
    assert frame.iloc[0][["prompt_median", "flop_ratio_limit"]].isna().all()  # dense: nothing to compare with
    md = deployment_markdown(frame)
    cells = [row for row in markdown_cells(md) if isinstance(row, list)]  # header, then one row per file
    assert cells[0][:7] == ["model", "method", "sparsity", "type", "arch", "MB", "export s"]
    assert cells[3][:6] == ["m", "o-fang", "40%", "q8_0", "deci", "185.9"] and cells[1][2] == "-"
    assert "1.50x [1.40, 1.60]" in md and "1.60x" in md and "+0.73%" in md
    assert "first n = 32 of the workflow's own evaluation windows" in md and "threads: 2, median [min, max] over 3 repeats" in md


def test_exports_without_engine_measurements_still_make_a_table():
    frame = deployment_frame([_export("dense", 0.0, 144.8, "llama")], [], [])
    md = deployment_markdown(frame)
    assert "144.8" in md and "speedup" not in md and "llama.cpp on the workflow" not in md
