"""benchmarks/side_by_side.py: the machinery in --quick mode on tiny configs, and the doc's markers."""
from __future__ import annotations

import dataclasses
import importlib.util
import re
import sys
from pathlib import Path

import pytest

from speechtok.errors import SpeechtokError

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "side_by_side.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("side_by_side", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their annotations through sys.modules
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def test_quick_run_measures_tiny_models_and_writes_only_between_markers(bench, tmp_path, monkeypatch):
    # A peer whose package is missing is listed as skipped, with the reason, and never started.
    monkeypatch.setitem(bench.SYSTEMS, "mimi", dataclasses.replace(bench.SYSTEMS["mimi"], requires="no_such_pkg_xyz"))
    doc = tmp_path / "performance.md"
    before = "# Perf\n\nkept intro\n\n"
    after = "\n\n<!-- sitok-speed:begin -->\nother section\n<!-- sitok-speed:end -->\n"
    doc.write_text(f"{before}{bench.BEGIN}\nstale table\n{bench.END}{after}")
    saved = tmp_path / "rows.json"

    assert bench.main(["--quick", "--systems", "sitok-tiny", "holitok-tiny", "mimi", "-o", str(doc),
                       "--save-rows", str(saved)]) == 0

    text = doc.read_text()
    assert text.startswith(before + bench.BEGIN) and text.endswith(bench.END + after)
    assert "stale table" not in text
    for name in ("sitok-tiny", "holitok-tiny"):  # measured: x RT for encode and decode, 1 run each
        cells = r"[\d.]+ \(1\) \| [\d.]+ \(1\) \| [\d.]+ \| [\d.]+ \|"
        assert re.search(rf"\| {name} \| [\d.]+ M \| 1 \| 1 s \| {cells}", text), text
    assert "| mimi | – | 1 | 1 s | 'no_such_pkg_xyz' not installed" in text
    assert re.search(r"flags: (none of|avx|amx)", text), text  # the CPU summary is detected, not assumed
    assert saved.is_file()


def test_missing_markers_are_appended_and_broken_markers_refused(bench, tmp_path):
    fresh = tmp_path / "new.md"
    bench.write_section(fresh, "table one")
    assert fresh.read_text().startswith(bench.DOC_INTRO)
    bench.write_section(fresh, "table two")
    assert "table two" in fresh.read_text() and "table one" not in fresh.read_text()

    plain = tmp_path / "plain.md"
    plain.write_text("# Other doc\n")
    bench.write_section(plain, "t")
    assert plain.read_text() == f"# Other doc\n\n{bench.BEGIN}\nt\n{bench.END}\n"

    broken = tmp_path / "broken.md"
    broken.write_text(f"{bench.BEGIN}\na\n{bench.END}\n{bench.BEGIN}\n")
    with pytest.raises(SpeechtokError, match="expected one"):
        bench.write_section(broken, "t")
    assert broken.read_text() == f"{bench.BEGIN}\na\n{bench.END}\n{bench.BEGIN}\n"
    reversed_ = tmp_path / "reversed.md"
    reversed_.write_text(f"{bench.END}\n{bench.BEGIN}\n")
    with pytest.raises(SpeechtokError, match="expected one"):
        bench.write_section(reversed_, "t")


def test_broken_doc_is_refused_before_measuring(bench, tmp_path, capsys):
    broken = tmp_path / "broken.md"
    broken.write_text(f"{bench.BEGIN}\n")
    with pytest.raises(SystemExit) as exc:
        bench.main(["--quick", "--systems", "sitok-tiny", "-o", str(broken)])
    assert exc.value.code == 2 and "expected one" in capsys.readouterr().err


def test_render_skipped_rows_and_the_before_table(bench):
    rows = [{"system": "dac-24k", "threads": 2, "seconds": 10.0, "params": 74.7e6, "encode_s": 5.0, "decode_s": 20.0,
             "encode_cpu_s": 8.0, "decode_cpu_s": 40.0, "encode_runs": 3, "decode_runs": 2, "encode_mb": 100.0,
             "decode_mb": None},
            {"system": "dac-24k", "threads": 2, "seconds": 60.0, "params": 74.7e6, "skipped": "skipped: too slow"}]
    text = bench.render(rows, command="cmd", threads=[2], load=("1.00", "2.00"))
    assert "| dac-24k | 74.7 M | 2 | 10 s | 2 (3) | 0.5 (2) | 1.25 | 0.25 | 100 | – |" in text
    assert "| dac-24k | 74.7 M | 2 | 60 s | skipped: too slow |" in text
    assert "| dac-24k | 1.7 | 2 | – | 0.95 | 0.5 | – |" in text  # issue 16's beside this run
