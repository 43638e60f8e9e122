"""The text report's summary table and token strips, and the windows the engine keeps for them.

Rows are built from known parts and written to real files; what the strips show is checked
against the parts, not against a copy of the output.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import labellint
from labellint import engine, window
from labellint.strips import token_text

ROOT = Path(__file__).parent.parent
PAD, BOS, EOS = 0, 1, 2
FACTS = {"pad_id": PAD, "bos_id": BOS, "eos_id": EOS, "vocab_size": 400}


def build(prompt: int, answer: int, *, pad=0, left=0, label_pad=False, hide=0, eos=True,
          seed=0):
    """A row of known layout, and the state each token must be shown in."""
    rng = np.random.default_rng(seed)
    p = [BOS] + rng.integers(10, 390, prompt - 1).tolist()
    a = rng.integers(10, 390, answer).tolist() + [EOS] * eos
    ids = [PAD] * left + p + a + [PAD] * pad
    attn = [0] * left + [0] * hide + [1] * (len(p) - hide) + [1] * len(a) + [0] * pad
    labels = [-100] * (left + len(p)) + a + [PAD if label_pad else -100] * pad
    states = (["padding"] * left + ["attention-off"] * hide + ["masked"] * (len(p) - hide)
              + ["trained"] * len(a) + ["padding"] * pad)
    return {"input_ids": ids, "attention_mask": attn, "labels": labels}, states


def write(path, rows):
    cols = {k: pa.array([r[k] for r in rows], pa.list_(pa.int32())) for k in rows[0]}
    pq.write_table(pa.table(cols), path)
    return path


@pytest.fixture
def planted(tmp_path):
    """Long rows with labels on padding (LL103) and rows without EOS (LL404), in parquet."""
    built = []
    for i in range(40):
        if i % 4 == 1:
            built.append(build(150, 100, pad=30, label_pad=True, seed=i))
        elif i % 4 == 2:
            built.append(build(150, 100, eos=False, seed=i))
        else:
            built.append(build(150, 100, pad=i % 3, seed=i))
    return write(tmp_path / "planted.parquet", [r for r, _ in built]), built


def test_strips_show_each_token_in_the_state_it_was_built_in(planted):
    path, built = planted
    report = labellint.check(path, **FACTS)
    assert {f.code for f in report.findings} == {"LL103", "LL404"}
    for f in report.findings:
        assert [w.row for w in f.windows] == list(f.rows)
        for w in f.windows:
            row, states = built[w.row]
            assert list(w.ids) == [row["input_ids"][i] for i in w.index]
            assert list(w.states) == [states[i] for i in w.index]
            assert list(w.target) == [row["labels"][i] != -100 and i > 0 for i in w.index]
            assert w.length == len(row["input_ids"])


def test_token_finding_window_surrounds_the_flagged_positions(planted):
    path, built = planted
    (f,) = [f for f in labellint.check(path, **FACTS).findings if f.code == "LL103"]
    for w, positions in zip(f.windows, f.positions):
        assert len(w) == window.WINDOW
        assert positions[0] in w.index and w.index[0] < positions[0]  # some context before
        assert set(w.hits) == set(positions)


def test_row_finding_window_shows_start_first_target_and_end(planted):
    path, built = planted
    (f,) = [f for f in labellint.check(path, **FACTS).findings if f.code == "LL404"]
    for w in f.windows:
        row, _ = built[w.row]
        first_target = next(i for i, lab in enumerate(row["labels"]) if lab != -100)
        assert {0, first_target, len(row["input_ids"]) - 1} <= set(w.index)
        assert len(w) <= window.WINDOW


@pytest.mark.parametrize("max_examples", [0, 2, 5])
def test_windows_are_bounded_and_kept_only_for_recorded_rows(planted, monkeypatch,
                                                             max_examples):
    path, _ = planted
    calls = []
    real = engine.capture
    monkeypatch.setattr(engine, "capture", lambda *a: calls.append(a) or real(*a))
    report = labellint.check(path, chunk_rows=3, max_examples=max_examples, **FACTS)
    for f in report.findings:
        assert len(f.windows) == len(f.rows) <= max_examples
        assert all(len(w) <= window.WINDOW for w in f.windows)
    # Rows recorded as examples, and no others; a whole-dataset rule (LL102) records its first
    # rows before it knows whether every chunk fails it, so it may add max_examples more.
    assert sum(len(f.rows) for f in report.findings) <= len(calls)
    assert len(calls) <= sum(len(f.rows) for f in report.findings) + max_examples


def test_windows_do_not_depend_on_the_chunking(planted, monkeypatch):
    path, _ = planted
    one = labellint.check(path, **FACTS)
    many = labellint.check(path, chunk_rows=3, **FACTS)
    assert [f.windows for f in one.findings] == [f.windows for f in many.findings]
    monkeypatch.setattr(window, "SMALL_CHUNK", 0)  # every chunk classified row by row
    by_row = labellint.check(path, **FACTS)
    assert [f.windows for f in one.findings] == [f.windows for f in by_row.findings]


def test_json_form_is_unchanged(planted):
    path, _ = planted
    data = labellint.check(path, **FACTS).to_dict()
    for finding in data["findings"]:
        assert set(finding) == {"code", "name", "severity", "message", "source", "rows",
                                "positions", "count_rows", "count_tokens", "total_rows",
                                "total_tokens", "fix", "doc"}


# -- the text ---------------------------------------------------------------------------------


def test_summary_table_heads_the_report(planted):
    path, _ = planted
    report = labellint.check(path, **FACTS)
    lines = report.render().plain.splitlines()
    assert lines[0].split() == ["code", "name", "severity", "rows", "%", "rows"]
    for line, f in zip(lines[1:], report.findings):
        code, name, severity, rows, pct = line.split()
        assert (code, name, severity) == (f.code, f.name, f.severity)
        assert int(rows.replace(",", "")) == f.count_rows
        assert float(pct.rstrip("%")) == pytest.approx(100 * f.count_rows / f.total_rows,
                                                       abs=0.05)


def test_finding_lines_keep_their_format_with_strips_under_them(planted):
    path, _ = planted
    report = labellint.check(path, **FACTS)
    text = report.render().plain
    for f in report.findings:
        head = f"{f.source}[{f.rows[0]}]: {f.code} ({f.severity}) {f.message} [{f.name}]"
        block = text.split(head + "\n", 1)[1].split("  help: ", 1)[0].splitlines()
        assert block[0].startswith("  rows: ")
        strips = [ln for ln in block[1:] if ln.lstrip().startswith("row ")]
        assert [int(s.split()[1].rstrip(":")) for s in strips] == list(f.rows[:3])


def labellint_cli(*args):
    return subprocess.run([sys.executable, "-m", "labellint", *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT)


@pytest.mark.slow
def test_piped_report_decodes_strips_and_puts_carets_under_flagged_tokens(tmp_path, tok):
    tok.save_pretrained(tmp_path / "tok")
    enc = tok("what is the capital of france?")["input_ids"]
    ans = tok("paris.", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    pad = tok.pad_token_id
    rows = [{"input_ids": enc + ans + [pad] * 2, "attention_mask": [1] * len(enc + ans) + [0, 0],
             "labels": [-100] * len(enc) + ans + [pad, pad]}] * 3
    path = write(tmp_path / "bad.parquet", rows)
    result = labellint_cli("check", path, "--tokenizer", tmp_path / "tok")
    assert result.returncode == 1 and "\x1b[" not in result.stdout
    lines = result.stdout.splitlines()
    strip_at = next(i for i, ln in enumerate(lines) if ln.lstrip().startswith("row 0:"))
    strip, carets = lines[strip_at], lines[strip_at + 1]
    # Decoded, with the states in brackets: the answer trained, padding with a label flagged.
    assert "<s> what ·is ·the ·capital" in strip
    assert "[" + tok.decode(ans[:1]) in strip
    flagged = [m.span() for m in re.finditer(r"\^+", carets)]
    assert [strip[a:b].strip("{}[]") for a, b in flagged] == ["<pad>", "<pad>"]
    legend = next(ln for ln in lines if ln.startswith("tokens: "))
    assert "[trained]" in legend and "{padding}" in legend and "^ flagged" in legend


def test_strips_mark_attention_off_and_left_padding(tmp_path):
    hidden, _ = build(6, 4, hide=3, seed=1)
    left, _ = build(6, 4, left=2, seed=2)
    report = labellint.check({k: [hidden[k], left[k]] for k in hidden}, **FACTS)
    text = report.render().plain
    by_code = {f.code: f for f in report.findings}
    assert set(by_code) >= {"LL201", "LL202"}
    w = by_code["LL201"].windows[0]
    shown = " ".join(token_text(w, k) for k in range(3))
    assert f"row 0: ({shown})" in text  # the hidden prompt, one run in parentheses
    assert "row 1: {<pad> <pad>} <bos>" in text


def test_terminal_report_colours_strips_instead_of_bracketing_them(planted):
    from rich.console import Console

    path, _ = planted
    report = labellint.check(path, **FACTS)
    coloured = Console(force_terminal=True, color_system="truecolor", width=120,
                       file=open("/dev/null", "w"))
    with coloured.capture() as cap:
        coloured.print(report)
    out = cap.get()
    assert "\x1b[" in out
    strips = [re.sub(r"\x1b\[[0-9;]*m", "", ln) for ln in out.splitlines()
              if re.sub(r"\x1b\[[0-9;]*m", "", ln).lstrip().startswith("row ")]
    assert strips and not any("{" in s or "[" in s for s in strips)
    plain = Console(width=120, file=open("/dev/null", "w"))  # not a terminal: no colours
    with plain.capture() as cap:
        plain.print(report)
    assert "\x1b[" not in cap.get() and "{[" in cap.get()


def test_strip_without_a_tokenizer_names_the_special_ids(planted):
    path, built = planted
    (f,) = [f for f in labellint.check(path, **FACTS).findings if f.code == "LL103"]
    w = f.windows[0]
    names = {PAD: "<pad>", BOS: "<bos>", EOS: "<eos>"}
    assert [token_text(w, k) for k in range(len(w))] == [
        names.get(i, str(i)) for i in w.ids]


def test_jsonl_rows_of_a_real_tokenizer_decode_the_same_as_the_text(tmp_path, tok):
    text = "write a haiku about the sea. waves fold into foam"
    ids = tok(text)["input_ids"]
    path = tmp_path / "rows.jsonl"
    row = {"input_ids": ids, "labels": [-100] + ids[1:]}
    path.write_text(json.dumps(row) + "\n")
    report = labellint.check(path, tok, select=["LL404"])
    (w,) = report.findings[0].windows
    assert "".join(w.texts[1:]) == tok.decode(ids[1:]) and w.special[0] == tok.bos_token
