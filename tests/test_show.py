"""`labellint show`: a row's tokens and states, in text and HTML, and the findings of that row.

Rows are built from known parts (a prompt, an answer, padding, a hidden prompt, packed
sequences from the real DataCollatorWithFlattening) and written to real files; the states shown
are checked against the parts each row was built from.
"""

import contextlib
import io
import json
import os
import pty
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import labellint
from labellint import strips, window

pytest.importorskip("transformers")
ROOT = Path(__file__).parent.parent
ANSI = "\x1b["


def labellint_process(*args):
    """The command in a real process: for exit codes and streams as a shell sees them."""
    return subprocess.run([sys.executable, "-m", "labellint", *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT)


def labellint_cli(*args):
    """The command run in this process (labellint.cli.main), its streams captured.

    Most tests here check what is rendered, which needs no process of its own: starting one
    that imports transformers costs seconds per test.
    """
    from labellint.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as e:  # argparse's usage errors
            code = e.code
    return subprocess.CompletedProcess(["labellint", *map(str, args)], code, out.getvalue(),
                                       err.getvalue())


def encode(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def sft_row(tok, prompt, answer, *, pad=0, left=0, hide_prompt=False, label_pad=False):
    """A row and the state each of its tokens must be shown in."""
    p = [tok.bos_token_id] + encode(tok, prompt)
    a = encode(tok, answer) + [tok.eos_token_id]
    ids = p + a
    attn = [0 if hide_prompt else 1] * len(p) + [1] * len(a)
    labels = [-100] * len(p) + a
    states = ["attention-off" if hide_prompt else "masked"] * len(p) + ["trained"] * len(a)
    target = [False] * len(p) + [True] * len(a)
    pad_label = tok.pad_token_id if label_pad else -100
    ids = [tok.pad_token_id] * left + ids + [tok.pad_token_id] * pad
    attn = [0] * left + attn + [0] * pad
    labels = [-100] * left + labels + [pad_label] * pad
    states = ["padding"] * left + states + ["padding"] * pad
    target = [False] * left + target + [label_pad] * pad
    row = {"input_ids": ids, "attention_mask": attn, "labels": labels,
           "position_ids": list(range(len(ids)))}
    return row, states, target


@pytest.fixture(scope="module")
def data(tmp_path_factory, tok):
    """A parquet file of SFT rows, each with a known layout, and the tokenizer folder."""
    out = tmp_path_factory.mktemp("show")
    tok.save_pretrained(out / "tok")
    built = [
        sft_row(tok, "what is the capital of france?", "paris.", pad=2),
        sft_row(tok, "how many legs does a spider have?", "eight legs.", left=3),
        sft_row(tok, "translate to german: good morning.", "guten morgen.", hide_prompt=True),
        sft_row(tok, "hello there", "hi! how can i help you today?", pad=3, label_pad=True),
    ]
    rows = [r for r, _, _ in built]
    table = pa.table({k: pa.array([r[k] for r in rows], pa.list_(pa.int32())) for k in rows[0]})
    pq.write_table(table, out / "sft.parquet")
    return {"path": out / "sft.parquet", "tok": out / "tok", "rows": rows,
            "states": [s for _, s, _ in built], "target": [t for _, _, t in built]}


@pytest.fixture(scope="module")
def packed(tmp_path_factory, tok):
    """Rows packed by the real DataCollatorWithFlattening (position_ids restart), as jsonl."""
    from transformers import DataCollatorWithFlattening

    texts = [("the quick brown fox", "jumps over the lazy dog"),
             ("write a haiku about the sea", "waves fold into foam"),
             ("what is the capital of france?", "paris.")]
    examples = []
    for prompt, answer in texts:
        p = [tok.bos_token_id] + encode(tok, prompt)
        a = encode(tok, answer) + [tok.eos_token_id]
        examples.append({"input_ids": p + a, "labels": [-100] * len(p) + a})
    batch = DataCollatorWithFlattening(return_tensors="np")(examples)
    row = {k: np.asarray(batch[k])[0].tolist() for k in ("input_ids", "labels", "position_ids")}
    path = tmp_path_factory.mktemp("packed") / "packed.jsonl"
    path.write_text(json.dumps(row) + "\n" + json.dumps(row) + "\n")
    starts = [0] + list(np.cumsum([len(e["input_ids"]) for e in examples])[:-1])
    return {"path": path, "row": row, "starts": [int(s) for s in starts], "examples": examples}


class Chips(HTMLParser):
    """The token chips and boundary marks of a `show --format html` page, in order."""

    def __init__(self):
        super().__init__()
        self.chips, self.boundaries, self.tags, self.external = [], [], [], []
        self._depth = 0  # spans open inside the current chip (its label, its position mark)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        self.external += [a[key] for key in ("src", "href") if key in a]
        if self._depth:
            self._depth += tag == "span"
        elif tag == "span" and "data-index" in a:
            self.chips.append(dict(a, text=""))
            self._depth = 1
        elif tag == "span" and "boundary" in a.get("class", "").split() and self.chips:
            self.boundaries.append(len(self.chips))

    def handle_data(self, data):
        if self._depth:
            self.chips[-1]["text"] += data

    def handle_endtag(self, tag):
        if self._depth and tag == "span":
            self._depth -= 1


def parse(html: str) -> Chips:
    p = Chips()
    p.feed(html)
    return p


def html_of(tmp_path, *args):
    out = tmp_path / "row.html"
    result = labellint_cli("show", *args, "--format", "html", "-o", out)
    assert result.returncode == 0, result.stderr
    return out.read_text(encoding="utf-8")


# -- HTML -------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", range(4))
def test_html_shows_each_token_in_the_state_it_was_built_in(data, tmp_path, n):
    page = parse(html_of(tmp_path, data["path"], "--row", n, "--tokenizer", data["tok"]))
    row = data["rows"][n]
    assert [int(c["data-index"]) for c in page.chips] == list(range(len(row["input_ids"])))
    assert [int(c["data-id"]) for c in page.chips] == row["input_ids"]
    assert [int(c["data-label"]) for c in page.chips] == row["labels"]
    assert [c["data-state"] for c in page.chips] == data["states"][n]
    assert [c["data-target"] == "1" for c in page.chips] == data["target"][n]
    for c in page.chips:  # the hover title names what the attributes carry
        assert f"id {c['data-id']}" in c["title"] and f"label {c['data-label']}" in c["title"]
        assert f"position {c['data-position']}" in c["title"]


def test_html_is_self_contained(data, tmp_path):
    html = html_of(tmp_path, data["path"], "--row", 0, "--tokenizer", data["tok"])
    page = parse(html)
    assert page.external == [] and "script" not in page.tags and "link" not in page.tags
    assert "<style>" in html and "url(" not in html and "@import" not in html
    assert html.startswith("<!DOCTYPE html>")


def test_html_decodes_tokens_so_they_read_as_the_text(data, tmp_path, tok):
    page = parse(html_of(tmp_path, data["path"], "--row", 0, "--tokenizer", data["tok"]))
    specials = set(tok.all_special_ids)
    shown = "".join(c["text"] for c in page.chips if int(c["data-id"]) not in specials)
    ids = [i for i in data["rows"][0]["input_ids"] if i not in specials]
    assert shown.replace("·", " ") == tok.decode(ids)
    named = [c["text"] for c in page.chips if int(c["data-id"]) in specials]
    assert named == tok.convert_ids_to_tokens(
        [i for i in data["rows"][0]["input_ids"] if i in specials])
    assert all("special" in c["class"].split() for c in page.chips if c["text"] in named)


def test_html_without_a_tokenizer_shows_ids(data, tmp_path):
    page = parse(html_of(tmp_path, data["path"], "--row", 0))
    row = data["rows"][0]
    # The pad id is inferred from the data here; bos and eos from rows' edges.
    facts = labellint.check(data["path"]).facts[str(data["path"])]
    names = window.special_names(facts)
    assert [c["text"] for c in page.chips] == [names.get(i, str(i)) for i in row["input_ids"]]


def test_html_marks_the_positions_a_finding_flags(data, tmp_path):
    page = parse(html_of(tmp_path, data["path"], "--row", 3, "--tokenizer", data["tok"]))
    flagged = [int(c["data-index"]) for c in page.chips if "hit" in c["class"].split()]
    labels = np.array(data["rows"][3]["labels"])
    attn = np.array(data["rows"][3]["attention_mask"])
    assert flagged == np.flatnonzero((attn == 0) & (labels != -100)).tolist()
    assert all("LL103" in c["title"] for c in page.chips if "hit" in c["class"].split())


def test_packed_row_shows_a_boundary_at_each_sequence_start(packed, tmp_path, tok):
    tok.save_pretrained(tmp_path / "tok")
    page = parse(html_of(tmp_path, packed["path"], "--row", 1, "--tokenizer", tmp_path / "tok"))
    # A boundary is drawn before the chip where each later packed sequence starts.
    assert page.boundaries == packed["starts"][1:]
    assert [int(c["data-position"]) for c in page.chips] == packed["row"]["position_ids"]
    # The collator masks each sequence's first token: shown masked, the rest of the answer
    # trained, and no padding or hidden tokens in a flattened row.
    states = [c["data-state"] for c in page.chips]
    expected = ["trained" if lab != -100 and i not in packed["starts"] else "masked"
                for i, lab in enumerate(packed["row"]["labels"])]
    assert states == expected


def test_packed_row_in_text_starts_each_sequence_on_its_own_line(packed):
    result = labellint_cli("show", packed["path"], "--row", 0)
    assert result.returncode == 0, result.stderr
    lines = [ln for ln in result.stdout.splitlines() if f"│ {strips.BOUNDARY}" in ln]
    assert len(lines) == len(packed["starts"]) - 1
    for line, start in zip(lines, packed["starts"][1:]):
        # "<index> p<position id> │ ‖ ...": the sequence's first token, at position id 0.
        index, pos = line.split("│")[0].split()
        assert int(index) == start and pos == "p0"
    assert "3 packed sequences" in result.stdout.splitlines()[0]


# -- text -------------------------------------------------------------------------------------


@pytest.mark.parametrize("run", [labellint_cli,
                                 pytest.param(labellint_process, marks=pytest.mark.slow)])
def test_text_when_piped_is_plain_with_bracketed_states(data, tok, run):
    result = run("show", data["path"], "--row", 1, "--tokenizer", data["tok"])
    assert result.returncode == 0, result.stderr
    assert ANSI not in result.stdout
    body = result.stdout
    row = data["rows"][1]
    # Left padding: the row opens with a run of padding in braces, then BOS, masked (bare).
    assert "│ {<pad> <pad> <pad>} <s> " in body
    first_answer = row["labels"].index(next(x for x in row["labels"] if x != -100))
    text = tok.decode([row["input_ids"][first_answer]]).replace(" ", "·")
    assert f"[{text}" in body
    assert "LL202 (warning)" in body


def test_text_shows_attention_off_content_in_parentheses(data):
    result = labellint_cli("show", data["path"], "--row", 2, "--tokenizer", data["tok"])
    body = result.stdout
    assert "│ (<s> " in body  # the hidden prompt, BOS first, in one run
    assert "LL201 (error)" in body


def _on_a_terminal(args, env):
    """Run the CLI with stdout on a pseudo-terminal, as a person runs it."""
    leader, follower = pty.openpty()
    base = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    proc = subprocess.Popen([sys.executable, "-m", "labellint", *map(str, args)],
                            stdout=follower, stderr=subprocess.PIPE, cwd=ROOT,
                            env={**base, "TERM": "xterm-256color", "COLUMNS": "120", **env})
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    proc.wait(timeout=60)
    os.close(leader)
    return proc.returncode, b"".join(chunks).decode()


@pytest.mark.slow
def test_terminal_gets_colours_and_no_color_is_honoured(data):
    args = ["show", data["path"], "--row", 0, "--tokenizer", data["tok"]]
    code, coloured = _on_a_terminal(args, {})
    assert code == 0 and ANSI in coloured
    first_line = re.sub(r"\x1b\[[0-9;]*m", "", coloured.split("│", 1)[1].split("\n")[0])
    assert "[" not in first_line and "{" not in first_line  # colours, not brackets
    code, plain = _on_a_terminal(args, {"NO_COLOR": "1"})
    assert code == 0 and ANSI not in plain and "[" in plain


def test_long_row_folds_in_text_and_is_whole_in_html(tmp_path, tok):
    rng = np.random.default_rng(0)
    ids = [1] + rng.integers(10, 390, 3000).tolist() + [2]
    labels = [-100] * 1500 + ids[1500:]
    path = tmp_path / "long.jsonl"
    path.write_text(json.dumps({"input_ids": ids, "labels": labels}) + "\n")
    result = labellint_cli("show", path, "--row", 0, "--pad-id", 0, "--bos-id", 1,
                           "--eos-id", 2)
    lines = [ln for ln in result.stdout.splitlines() if "│" in ln]  # the tokens
    assert max(len(ln) for ln in lines) <= 100
    starts = [int(ln.split("│")[0]) for ln in lines if "│" in ln]
    assert starts[0] == 0 and starts == sorted(starts) and len(starts) > 30
    page = parse(html_of(tmp_path, path, "--row", 0, "--pad-id", 0))
    assert len(page.chips) == len(ids)


# -- findings of the row ----------------------------------------------------------------------


def test_row_findings_are_what_check_finds_on_that_row(data, packed):
    """Every row: show's findings are the token and row findings check reports for it."""
    for path, n_rows in ((data["path"], len(data["rows"])), (packed["path"], 2)):
        report = labellint.check(path, max_examples=100)
        for row in range(n_rows):
            shown = labellint.show(path, row=row)
            expected = {f.code for f in report.findings
                        if row in f.rows and labellint.get_rule(f.code).per != "batch"}
            assert {f.code for f in shown.findings} == expected, (path, row)
            for f in shown.findings:
                whole = next(g for g in report.findings if g.code == f.code)
                if f.positions:
                    assert f.positions[0][:16] == whole.positions[whole.rows.index(row)]


def test_facts_are_the_whole_sources_not_the_rows(tmp_path):
    # Padding shows the pad id only in rows that have padding: row 0 has none, and on its
    # own could not tell what the pad id is. Its facts are the file's.
    rows = [{"input_ids": [1, 5, 6, 2], "attention_mask": [1, 1, 1, 1]}] + [
        {"input_ids": [1, 5, 2, 0], "attention_mask": [1, 1, 1, 0]} for _ in range(4)]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    shown = labellint.show(path, row=0)
    assert shown.facts == labellint.check(path).facts[str(path)]
    assert shown.facts.pad_id == 0 and shown.tokens.special[-1] == "<eos>"


def test_batch_rules_are_left_to_check_and_said_so(tmp_path):
    batch = {"input_ids": [[1, 5, 6, 2]], "labels": [[-100] * 4]}
    shown = labellint.show(batch, row=0, pad_id=0, bos_id=1, eos_id=2)
    assert "LL102" in shown.not_judged
    assert [f.code for f in shown.findings] == ["LL101"]
    assert "not judged on one row: LL102" in str(shown)


def test_python_show_reads_what_check_reads(tok, data):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list(data["rows"])
    from_ds = labellint.show(ds, row=3, tokenizer=tok)
    from_file = labellint.show(data["path"], row=3, tokenizer=tok)
    assert from_ds.tokens == from_file.tokens
    assert [f.code for f in from_ds.findings] == [f.code for f in from_file.findings]
    assert from_ds._repr_html_().count('data-index="') == len(data["rows"][3]["input_ids"])
    with pytest.raises(labellint.LabelLintError, match="show reads one"):
        labellint.show(datasets.DatasetDict({"a": ds, "b": ds}), row=0)


# -- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize("run", [labellint_cli,
                                 pytest.param(labellint_process, marks=pytest.mark.slow)])
@pytest.mark.parametrize("args, message", [
    (["--row", "99"], "no row 99; it has 4 rows (0 to 3)"),
    (["--row", "-1"], "row must be a row index (0 or more), not -1"),
])
def test_bad_row_is_one_line_and_exit_2(data, args, message, run):
    result = run("show", data["path"], *args)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"labellint: error: {data['path']}: {message}"
                                                  if "no row" in message else
                                                  f"labellint: error: {message}"]


@pytest.mark.slow
def test_missing_path_is_one_line_and_exit_2(tmp_path):
    result = labellint_process("show", tmp_path / "nope.parquet", "--row", "0")
    assert result.returncode == 2
    assert result.stderr == f"labellint: error: {tmp_path / 'nope.parquet'}: no such file or " \
                            "folder\n"


def test_output_never_overwrites_the_data(data):
    before = data["path"].read_bytes()
    result = labellint_cli("show", data["path"], "--row", 0, "-o", data["path"])
    assert result.returncode == 2 and "write elsewhere" in result.stderr
    assert data["path"].read_bytes() == before
