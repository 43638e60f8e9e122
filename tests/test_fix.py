"""`fix`: a corrected copy whose fixed rows equal what the right producer writes, the input
untouched, unsafe fixes only on request, every change journaled, and OUT re-checked."""

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
datasets = pytest.importorskip("datasets")

from transformers import (  # noqa: E402
    DataCollatorForLanguageModeling,
    DataCollatorForSeq2Seq,
    DataCollatorWithFlattening,
)

import labellint  # noqa: E402
from labellint import cli  # noqa: E402

datasets.disable_progress_bars()

PAIRS = [
    ("question: how many legs does a spider have? answer:", " a spider has eight legs."),
    ("what is the capital of france?", " the capital of france is paris."),
    ("translate to german: good morning.", " guten morgen."),
    ("user: hello there assistant:", " hi! how can i help you today?"),
    ("write a haiku about the sea.", " waves fold into foam, the tide keeps its slow promise"),
    ("numbers", " 0 1 2 3 4 5 6 7 8 9 10"),
] * 4


def sft_features(tok, pairs=PAIRS):
    """The decoder-only SFT recipe: prompt + answer + EOS tokenized, the prompt masked."""
    out = []
    for i, (prompt, answer) in enumerate(pairs):
        ids = tok(prompt + answer + tok.eos_token)["input_ids"]
        n = len(tok(prompt)["input_ids"])
        out.append({"input_ids": ids, "attention_mask": [1] * len(ids),
                    "labels": [-100] * n + ids[n:], "text": prompt, "row_id": i})
    return out


def collated_rows(collator, features, size=4):
    """Rows of the padded batches `collator` makes of `features`, `size` at a time."""
    rows = []
    for start in range(0, len(features), size):
        part = features[start:start + size]
        batch = collator([{k: f[k] for k in ("input_ids", "attention_mask", "labels")}
                          for f in part])
        for j, f in enumerate(part):
            rows.append({"input_ids": batch["input_ids"][j].tolist(),
                         "attention_mask": batch["attention_mask"][j].tolist(),
                         "labels": batch["labels"][j].tolist(),
                         "text": f["text"], "row_id": f["row_id"]})
    return rows


def hashes(path):
    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def codes(report):
    return {f.code for f in report.findings}


def journal_rows(path, rule=None):
    changes = json.loads(Path(path).read_text())["changes"]
    return sorted({c["row"] for c in changes if rule is None or c["rule"] == rule})


def write_parquet(rows, path):
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


# -- safe fixes: the fixed copy is what the right producer writes ------------------------------


def test_labels_padded_with_the_pad_id_become_the_seq2seq_collators(tok, tmp_path):
    features = sft_features(tok)
    wrong = collated_rows(DataCollatorForSeq2Seq(tok, padding=True,
                                                 label_pad_token_id=tok.pad_token_id), features)
    right = collated_rows(DataCollatorForSeq2Seq(tok, padding=True), features)
    src = write_parquet(wrong, tmp_path / "train.parquet")
    before = hashes(src)
    assert "LL103" in codes(labellint.check(src, tokenizer=tok))

    result = labellint.fix(src, out=tmp_path / "fixed.parquet", tokenizer=tok)

    assert hashes(src) == before
    assert pq.read_table(tmp_path / "fixed.parquet").to_pylist() == right
    assert "LL103" not in codes(labellint.check(tmp_path / "fixed.parquet", tokenizer=tok))
    padded = [i for i, (w, r) in enumerate(zip(wrong, right)) if w != r]
    assert journal_rows(result.journal, "LL103") == padded
    assert result.changed["LL103"].rows == len(padded)


def test_a_doubled_bos_is_removed_from_every_token_column(tok, tmp_path):
    features = sft_features(tok)
    doubled = [dict(f) for f in features]
    planted = [1, 6, 7, 20]
    for i in planted:
        f = doubled[i]
        f["input_ids"] = [tok.bos_token_id] + f["input_ids"]
        f["attention_mask"] = [1] + f["attention_mask"]
        f["labels"] = [-100] + f["labels"]
        f["position_ids"] = list(range(len(f["input_ids"])))
    for i, f in enumerate(doubled):
        f.setdefault("position_ids", list(range(len(f["input_ids"]))))
        features[i]["position_ids"] = list(range(len(features[i]["input_ids"])))
    src = write_parquet(doubled, tmp_path / "train.parquet")

    result = labellint.fix(src, out=tmp_path / "fixed.parquet", tokenizer=tok)

    assert pq.read_table(tmp_path / "fixed.parquet").to_pylist() == \
        pa.Table.from_pylist(features).to_pylist()
    assert journal_rows(result.journal, "LL401") == planted
    assert result.exit_code == 0, result.render()


def test_packed_rows_become_what_the_flattening_collator_returns(tok, tmp_path):
    features = sft_features(tok)
    rows, right = [], []
    for start in range(0, len(features), 3):
        # Whole sequences trained (labels = input_ids), as in pretraining-style packing.
        part = [{"input_ids": f["input_ids"], "labels": f["input_ids"]}
                for f in features[start:start + 3]]
        good = DataCollatorWithFlattening(return_position_ids=True)(part)
        ids = good["input_ids"][0].tolist()
        pos = good["position_ids"][0].tolist()
        # Packed by hand: each sequence's first label kept, a plain all-ones mask passed too.
        labels = [lab for f in part for lab in f["labels"]]
        rows.append({"input_ids": ids, "labels": labels, "position_ids": pos,
                     "attention_mask": [1] * len(ids)})
        # The collator masks the row's first label too; the model's shift never reads it, so
        # fix leaves it (LL304 is about the starts inside the row).
        right.append({"input_ids": ids, "labels": labels[:1] + good["labels"][0].tolist()[1:],
                      "position_ids": pos})
    src = write_parquet(rows, tmp_path / "packed.parquet")
    assert {"LL304", "LL502"} <= codes(labellint.check(src, tokenizer=tok))

    result = labellint.fix(src, out=tmp_path / "fixed.parquet", tokenizer=tok)

    assert pq.read_table(tmp_path / "fixed.parquet").to_pylist() == right
    assert {"LL304", "LL502"} <= set(result.changed)
    assert result.exit_code == 0, result.render()


def test_minus_one_as_the_ignore_index_becomes_minus_100(tok, tmp_path):
    features = sft_features(tok)
    right = collated_rows(DataCollatorForSeq2Seq(tok, padding=True), features)
    wrong = collated_rows(DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-1),
                          features)
    src = write_parquet(wrong, tmp_path / "train.parquet")

    labellint.fix(src, out=tmp_path / "fixed.parquet", tokenizer=tok)

    assert pq.read_table(tmp_path / "fixed.parquet").to_pylist() == right


# -- unsafe fixes: only on request ---------------------------------------------------------------


def test_eos_masked_with_the_padding_is_supervised_only_with_unsafe_fixes(eos_pad_tok, tmp_path):
    tok = eos_pad_tok
    features = [{"input_ids": f["input_ids"]} for f in sft_features(tok)]
    rows = []
    for start in range(0, len(features), 4):
        batch = DataCollatorForLanguageModeling(tok, mlm=False)(features[start:start + 4])
        rows += [{k: batch[k][j].tolist() for k in ("input_ids", "attention_mask", "labels")}
                 for j in range(len(batch["input_ids"]))]
    src = write_parquet(rows, tmp_path / "lm.parquet")
    before = codes(labellint.check(src, tokenizer=tok))
    assert "LL403" in before

    safe = labellint.fix(src, out=tmp_path / "safe.parquet", tokenizer=tok)

    assert safe.exit_code == 1
    assert "LL403" in {c for c, *_ in safe.remaining}
    held = next(r for r in safe.rules if r.code == "LL403")
    assert held.held == len(rows) and held.rows == 0
    assert "more with --unsafe-fixes" in safe.render()
    assert pq.read_table(tmp_path / "safe.parquet").column("labels").to_pylist() == \
        [r["labels"] for r in rows]

    unsafe = labellint.fix(src, out=tmp_path / "unsafe.parquet", tokenizer=tok,
                           unsafe_fixes=True)

    assert "LL403" not in codes(labellint.check(tmp_path / "unsafe.parquet", tokenizer=tok))
    fixed = pq.read_table(tmp_path / "unsafe.parquet").to_pylist()
    for row, f in zip(fixed, features):
        end = len(f["input_ids"]) - 1  # the row's own EOS, before any padding
        assert row["labels"][end] == tok.eos_token_id
    assert unsafe.changed["LL403"].rows == len(rows)


def test_labels_shifted_by_hand_are_shifted_back_with_unsafe_fixes(tok, tmp_path):
    features = sft_features(tok)
    shifted = [dict(f, labels=f["labels"][1:] + [-100]) for f in features]
    src = write_parquet(shifted, tmp_path / "train.parquet")

    labellint.fix(src, out=tmp_path / "fixed.parquet", tokenizer=tok, unsafe_fixes=True)

    assert pq.read_table(tmp_path / "fixed.parquet").column("labels").to_pylist() == \
        [f["labels"] for f in features]


def test_fully_masked_rows_are_dropped_within_the_cap(tok, tmp_path):
    features = sft_features(tok)
    for i in (2, 9):
        features[i]["labels"] = [-100] * len(features[i]["labels"])
    src = write_parquet(features, tmp_path / "train.parquet")

    with pytest.raises(labellint.LabelLintError, match=r"drop 2 of 24 rows"):
        labellint.fix(src, out=tmp_path / "capped.parquet", tokenizer=tok,
                      unsafe_fixes=True)
    assert not os.path.lexists(tmp_path / "capped.parquet")
    assert [p.name for p in tmp_path.iterdir()] == ["train.parquet"]

    result = labellint.fix(src, out=tmp_path / "fixed.parquet", tokenizer=tok,
                           unsafe_fixes=True, max_drop_fraction=0.1)

    kept = pq.read_table(tmp_path / "fixed.parquet").column("row_id").to_pylist()
    assert kept == [i for i in range(24) if i not in (2, 9)]
    assert result.changed["LL101"].dropped == 2


# -- every format round-trips --------------------------------------------------------------------


def _padded_wrong(tok):
    features = sft_features(tok)
    wrong = collated_rows(DataCollatorForSeq2Seq(tok, padding=True,
                                                 label_pad_token_id=tok.pad_token_id), features)
    right = collated_rows(DataCollatorForSeq2Seq(tok, padding=True), features)
    return wrong, right


def _save_to_disk(rows, path):
    datasets.Dataset.from_list(rows).save_to_disk(str(path))


def _dataset_dict(rows, path):
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows[:16]),
                          "test": datasets.Dataset.from_list(rows[16:])}).save_to_disk(str(path))


def _shards(rows, path):
    path.mkdir()
    write_parquet(rows[:10], path / "part-0.parquet")
    write_parquet(rows[10:], path / "part-1.parquet")
    (path / "README.md").write_text("a card\n")


def _jsonl(rows, path):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _jsonl_gz(rows, path):
    import gzip

    with gzip.open(path, "wt") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows))


def _arrow_file(rows, path):
    table = pa.Table.from_pylist(rows)
    with pa.ipc.new_file(str(path), table.schema) as w:
        w.write_table(table, max_chunksize=7)


def _read_back(kind, path):
    if kind == "save_to_disk":
        return datasets.load_from_disk(str(path)).to_list()
    if kind == "dataset_dict":
        d = datasets.load_from_disk(str(path))
        return d["train"].to_list() + d["test"].to_list()
    if kind == "shards":
        return (pq.read_table(path / "part-0.parquet").to_pylist()
                + pq.read_table(path / "part-1.parquet").to_pylist())
    if kind == "jsonl":
        return [json.loads(line) for line in path.read_text().splitlines()]
    if kind == "jsonl.gz":
        import gzip

        return [json.loads(line) for line in gzip.open(path, "rt").read().splitlines()]
    return pa.ipc.open_file(str(path)).read_all().to_pylist()


FORMATS = {"save_to_disk": (_save_to_disk, "ds"), "dataset_dict": (_dataset_dict, "dd"),
           "shards": (_shards, "shards"), "jsonl": (_jsonl, "train.jsonl"),
           "jsonl.gz": (_jsonl_gz, "train.jsonl.gz"),
           "arrow": (_arrow_file, "train.arrow")}


@pytest.mark.parametrize("kind", FORMATS)
def test_every_format_round_trips_with_its_columns(tok, tmp_path, kind):
    write, name = FORMATS[kind]
    wrong, right = _padded_wrong(tok)
    src = tmp_path / name
    write(wrong, src)
    before = hashes(src)
    out = tmp_path / ("fixed" + "".join(Path(name).suffixes))

    result = labellint.fix(src, out=out, tokenizer=tok)

    assert hashes(src) == before
    assert result.exit_code == 0, result.render()
    assert _read_back(kind, out) == right
    assert "LL103" not in codes(labellint.check(out, tokenizer=tok))
    if kind == "shards":
        assert (out / "README.md").read_text() == "a card\n"


def test_a_glob_writes_its_files_under_out(tok, tmp_path):
    wrong, right = _padded_wrong(tok)
    _shards(wrong, tmp_path / "shards")

    labellint.fix(str(tmp_path / "shards" / "*.parquet"), out=tmp_path / "fixed", tokenizer=tok)

    assert _read_back("shards", tmp_path / "fixed") == right


def test_unchanged_jsonl_rows_keep_their_bytes(tok, tmp_path):
    wrong, _ = _padded_wrong(tok)
    src = tmp_path / "train.jsonl"
    src.write_text("".join(json.dumps(r, indent=None, separators=(",", ":")) + "\n"
                           for r in wrong))

    result = labellint.fix(src, out=tmp_path / "fixed.jsonl", tokenizer=tok)

    changed = set(journal_rows(result.journal))
    old, new = src.read_text().splitlines(), (tmp_path / "fixed.jsonl").read_text().splitlines()
    assert [i for i, (a, b) in enumerate(zip(old, new)) if a != b] == sorted(changed)


# -- refusals and failures -----------------------------------------------------------------------


def test_refuses_an_out_that_is_or_sits_inside_the_input(tok, tmp_path):
    wrong, _ = _padded_wrong(tok)
    _shards(wrong, tmp_path / "shards")
    (tmp_path / "link").symlink_to(tmp_path / "shards")
    before = hashes(tmp_path / "shards")
    for out, why in [(tmp_path / "shards" / "part-0.parquet", "already exists"),
                     (tmp_path / "shards" / "new", "inside the data"),
                     (tmp_path / "link" / "new", "inside the data"),
                     (tmp_path / "shards", "already exists")]:
        with pytest.raises(labellint.LabelLintError, match=why):
            labellint.fix(tmp_path / "shards", out=out, tokenizer=tok)
    with pytest.raises(labellint.LabelLintError, match="inside the data"):
        labellint.fix(tmp_path / "link", out=tmp_path / "shards" / "x", tokenizer=tok)
    assert hashes(tmp_path / "shards") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "shards"]


def test_refuses_a_single_file_copy_named_for_another_format(tok, tmp_path):
    src = write_parquet(_padded_wrong(tok)[0], tmp_path / "train.parquet")
    with pytest.raises(labellint.LabelLintError, match="its suffix"):
        labellint.fix(src, out=tmp_path / "fixed.jsonl", tokenizer=tok)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.parquet"]


def test_cli_refusals_are_one_line_and_exit_2(tok, tmp_path, capsys):
    wrong, _ = _padded_wrong(tok)
    src = write_parquet(wrong, tmp_path / "train.parquet")
    (tmp_path / "taken").mkdir()
    for out in (str(src), str(tmp_path / "taken")):
        assert cli.main(["fix", str(src), "--out", out, "--pad-id", "0"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "already exists" in err


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_failure_while_writing_leaves_no_out(tok, tmp_path, monkeypatch, jobs):
    from labellint import output

    wrong, _ = _padded_wrong(tok)
    _shards(wrong, tmp_path / "shards")
    calls = []

    def fail(self, table):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(self, table)

    real = output.TableFile.write
    monkeypatch.setattr(output.TableFile, "write", fail)
    with pytest.raises(OSError, match="disk full"):  # a file's second chunk, in each worker
        labellint.fix(tmp_path / "shards", out=tmp_path / "fixed", tokenizer=tok, jobs=jobs,
                      chunk_rows=4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shards"]


def test_a_fixed_rule_that_still_fires_removes_out(tok, tmp_path, monkeypatch):
    from dataclasses import replace

    from labellint import catalog
    from labellint.registry import Edit, Repair

    wrong, _ = _padded_wrong(tok)
    src = write_parquet(wrong, tmp_path / "train.parquet")
    rule = catalog.BUILTIN["LL103"]
    broken = replace(rule, repair=Repair(lambda b, hit: Edit(set={"labels": (
        np.flatnonzero(hit)[:1], -100)}), True, "masks one padding label"))
    monkeypatch.setitem(catalog.BUILTIN, "LL103", broken)

    with pytest.raises(labellint.LabelLintError, match="LL103 still fire"):
        labellint.fix(src, out=tmp_path / "fixed.parquet", tokenizer=tok)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.parquet"]


# -- the command line ------------------------------------------------------------------------------


def test_cli_fix_prints_the_summary_the_diff_and_writes_the_journal(tok, tmp_path, capsys):
    wrong, right = _padded_wrong(tok)
    tok.save_pretrained(tmp_path / "tok")
    src = write_parquet(wrong, tmp_path / "train.parquet")
    code = cli.main(["fix", str(src), "--out", str(tmp_path / "fixed.parquet"), "--tokenizer",
                     str(tmp_path / "tok"), "--diff", "--journal", str(tmp_path / "j.json"),
                     "--isolated"])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "LL103" in text and "is clean" in text
    befores = [line for line in text.splitlines() if line.startswith("  before:")]
    afters = [line for line in text.splitlines() if line.startswith("  after:")]
    assert len(befores) == len(afters) == 3  # the first rows, each drawn before and after
    # Decoded strips as check draws them: padding with a label `{[<pad>` before, bare after.
    assert all("{[<pad>" in line for line in befores), text
    assert all("{<pad>" in line and "[<pad>" not in line for line in afters), text
    assert all("</s>" in line for line in befores + afters)
    assert pq.read_table(tmp_path / "fixed.parquet").to_pylist() == right
    journal = json.loads((tmp_path / "j.json").read_text())
    assert {c["rule"] for c in journal["changes"]} == {"LL103"}
    assert journal["summary"]["rules"]


def test_cli_diff_draws_the_removed_second_bos_in_the_tokenizers_text(tmp_path, capsys):
    from labellint.testing import llama3_tokenizer

    tok = llama3_tokenizer()
    bos = tok.convert_ids_to_tokens(tok.bos_token_id)
    features = [{k: f[k] for k in ("input_ids", "attention_mask", "labels")}
                for f in sft_features(tok)]
    planted = [2, 5]
    for i in planted:
        f = features[i]
        f["input_ids"] = [tok.bos_token_id] + f["input_ids"]
        f["attention_mask"] = [1] + f["attention_mask"]
        f["labels"] = [-100] + f["labels"]
    assert features[0]["input_ids"][0] == tok.bos_token_id  # the template's own BOS
    tok.save_pretrained(tmp_path / "tok")
    src = write_parquet(features, tmp_path / "train.parquet")
    code = cli.main(["fix", str(src), "--out", str(tmp_path / "fixed.parquet"), "--tokenizer",
                     str(tmp_path / "tok"), "--diff", "--isolated"])
    text = capsys.readouterr().out
    assert code == 0, text
    lines = text.splitlines()
    heads = [i for i, line in enumerate(lines) if line.startswith("LL401 row ")]
    assert [lines[i].split()[2] for i in heads] == [str(i) for i in planted]
    for i in heads:
        before = lines[i + 1]
        after = next(line for line in lines[i + 1:] if line.startswith("  after:"))
        assert before.startswith("  before: "), text
        assert before.split()[1:3] == [bos, bos] and after.split()[1:3] != [bos, bos]
        assert after.split()[1] == bos
        # The removed BOS is flagged under the before strip (position 1), not under after.
        assert lines[i + 2].index("^") == before.index(bos, len("  before: ") + len(bos))
        assert "^" not in "".join(lines[lines.index(after) + 1:lines.index(after) + 2])


def test_cli_diff_without_a_tokenizer_shows_ids(tok, tmp_path, capsys):
    wrong, _ = _padded_wrong(tok)
    src = write_parquet(wrong, tmp_path / "train.parquet")
    code = cli.main(["fix", str(src), "--out", str(tmp_path / "fixed.parquet"), "--diff",
                     "--pad-id", str(tok.pad_token_id), "--isolated"])
    text = capsys.readouterr().out
    assert code == 0, text
    before = next(line for line in text.splitlines() if line.startswith("  before:"))
    chips = [c.strip("[]{}") for c in before.split()[1:] if c != "…"]
    assert "</s>" not in before and "<eos>" in chips and "{[<pad>" in before  # named by facts
    plain = [c for c in chips if not c.startswith("<")]
    assert plain and all(c.isdigit() for c in plain)  # no tokenizer: the ids themselves


def test_cli_fix_exits_1_naming_what_has_no_fix(tok, tmp_path, capsys):
    features = sft_features(tok)
    features[3]["input_ids"][2] = 10_000  # past the vocabulary: never fixed
    src = write_parquet(features, tmp_path / "train.parquet")
    tok.save_pretrained(tmp_path / "tok")
    code = cli.main(["fix", str(src), "--out", str(tmp_path / "fixed.parquet"), "--tokenizer",
                     str(tmp_path / "tok"), "--isolated"])
    text = capsys.readouterr().out
    assert code == 1
    assert "LL405" in text and "which token was meant cannot be known" in text


@pytest.mark.slow
def test_the_installed_command_fixes_a_save_to_disk_folder(tok, tmp_path):
    import subprocess
    import sys

    wrong, right = _padded_wrong(tok)
    _save_to_disk(wrong, tmp_path / "ds")
    exe = Path(sys.executable).parent / "labellint"
    run = subprocess.run([str(exe), "fix", str(tmp_path / "ds"), "--out", str(tmp_path / "out"),
                          "--pad-id", str(tok.pad_token_id), "--isolated"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode in (0, 1), run.stderr
    assert "LL103" in run.stdout
    assert [r["labels"] for r in datasets.load_from_disk(str(tmp_path / "out")).to_list()] == \
        [r["labels"] for r in right]


# -- TRL's packed datasets -------------------------------------------------------------------------


def test_trl_packed_dataset_keeps_its_seq_lengths_and_only_the_planted_row_changes(tok, tmp_path):
    trl = pytest.importorskip("trl")
    features = [{"input_ids": f["input_ids"], "labels": f["labels"]} for f in sft_features(tok)]
    packed = trl.pack_dataset(datasets.Dataset.from_list(features), seq_length=64,
                              strategy="bfd")
    rows = packed.to_list()
    assert max(len(r["seq_lengths"]) for r in rows) > 1
    planted = 2
    wrong = [dict(r) for r in rows]
    wrong[planted]["labels"] = [-1 if v == -100 else v for v in rows[planted]["labels"]]
    datasets.Dataset.from_list(wrong).save_to_disk(str(tmp_path / "packed"))
    packed.save_to_disk(str(tmp_path / "clean"))

    clean = labellint.fix(tmp_path / "clean", out=tmp_path / "same", tokenizer=tok)
    result = labellint.fix(tmp_path / "packed", out=tmp_path / "fixed", tokenizer=tok)

    assert result.exit_code == 0, result.render()
    assert journal_rows(result.journal) == [planted]
    fixed = datasets.load_from_disk(str(tmp_path / "fixed")).to_list()
    assert [r for i, r in enumerate(fixed) if i != planted] == \
        [r for i, r in enumerate(rows) if i != planted]
    assert fixed[planted]["seq_lengths"] == rows[planted]["seq_lengths"]
    # Only the labels LL104 judged change: at each sequence start TRL's collator masks the
    # label whatever it is, so a -1 planted there is not trained, not judged, and kept.
    starts = set(np.cumsum([0, *rows[planted]["seq_lengths"][:-1]]).tolist())
    expected = [w if j in starts else r for j, (w, r) in
                enumerate(zip(wrong[planted]["labels"], rows[planted]["labels"]))]
    assert fixed[planted]["labels"] == expected
    assert result.changed.keys() == {"LL104"}
    assert clean.changed == {} and journal_rows(clean.journal) == []
    assert datasets.load_from_disk(str(tmp_path / "same")).to_list() == rows


def test_bad_arguments_are_one_clear_error_and_write_nothing(tok, tmp_path):
    src = write_parquet(_padded_wrong(tok)[0], tmp_path / "train.parquet")
    (tmp_path / "taken.json").write_text("{}")
    cases = [({"max_drop_fraction": 2}, "between 0 and 1"),
             ({"journal": tmp_path / "taken.json"}, "already exists"),
             ({"select": ["LL999"]}, "unknown rule selector")]
    for kwargs, why in cases:
        with pytest.raises(labellint.LabelLintError, match=why):
            labellint.fix(src, out=tmp_path / "fixed.parquet", tokenizer=tok, **kwargs)
    with pytest.raises(labellint.LabelLintError, match="reads a path"):
        labellint.fix(datasets.Dataset.from_list([{"input_ids": [1, 2]}]), out=tmp_path / "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken.json", "train.parquet"]


@pytest.mark.parametrize("family", ["chatml", "llama3"])
def test_a_masked_end_of_turn_is_trained_with_unsafe_fixes_as_the_template_masks_it(family,
                                                                                    tmp_path):
    from labellint.testing import chatml_tokenizer, llama3_tokenizer
    from test_chat import CONVERSATIONS, masked_rows

    make = {"chatml": chatml_tokenizer, "llama3": llama3_tokenizer}[family]
    right = masked_rows(make())  # the template's {% generation %} holds the turn end
    wrong = masked_rows(make(end_in_generation=False))
    assert [r["input_ids"] for r in right] == [r["input_ids"] for r in wrong] != []
    src = write_parquet(wrong, tmp_path / "chat.parquet")
    tok = make()
    assert "LL603" in codes(labellint.check(src, tokenizer=tok))

    held = labellint.fix(src, out=tmp_path / "safe.parquet", tokenizer=tok)
    fixed = labellint.fix(src, out=tmp_path / "fixed.parquet", tokenizer=tok,
                          unsafe_fixes=True)

    assert "LL603" in {c for c, *_ in held.remaining}
    assert pq.read_table(tmp_path / "safe.parquet").to_pylist() == wrong
    assert pq.read_table(tmp_path / "fixed.parquet").to_pylist() == right
    assert journal_rows(fixed.journal, "LL603") == list(range(len(CONVERSATIONS)))


def test_a_file_url_is_fixed_as_its_path_and_a_remote_url_is_one_line(tok, tmp_path):
    features = sft_features(tok)
    wrong = collated_rows(DataCollatorForSeq2Seq(tok, padding=True,
                                                 label_pad_token_id=tok.pad_token_id), features)
    src = write_parquet(wrong, tmp_path / "train.parquet")
    result = labellint.fix(f"file://{src}", out=f"file://{tmp_path / 'fixed.parquet'}",
                           tokenizer=tok)
    assert result.changed["LL103"].rows > 0 and (tmp_path / "fixed.parquet").is_file()
    for source, out in ((f"memory://{src}", tmp_path / "a.parquet"),
                        (src, f"s3://bucket/{tmp_path.name}/b.parquet")):
        with pytest.raises(labellint.LabelLintError, match="fix reads and writes local data"):
            labellint.fix(source, out=out, tokenizer=tok)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "fixed.parquet", "fixed.parquet.journal.json", "train.parquet"]


# -- worker processes --------------------------------------------------------------------------


def _relative(path):
    return {str(Path(p).relative_to(path)): h for p, h in hashes(path).items()}


@pytest.mark.parametrize("kind", ["save_to_disk", "shards"])
def test_the_copy_and_journal_are_the_same_bytes_whatever_the_number_of_jobs(tok, tmp_path,
                                                                           monkeypatch, kind):
    wrong, right = _padded_wrong(tok)
    for i in (3, 14, 22):  # a second BOS in rows of different shards: rows shift in some
        r = wrong[i]
        r["input_ids"] = [tok.bos_token_id] + r["input_ids"]
        r["attention_mask"] = [1] + r["attention_mask"]
        r["labels"] = [-100] + r["labels"]
    write, name = FORMATS[kind]
    src = tmp_path / name
    if kind == "save_to_disk":
        datasets.Dataset.from_list(wrong).save_to_disk(str(src), num_shards=3)
    else:
        write(wrong, src)
    forked = []
    real = labellint.parallel.map_forked

    def spy(task, count, **kw):
        forked.append(count)
        return real(task, count, **kw)

    monkeypatch.setattr(labellint.parallel, "map_forked", spy)
    outs, texts = {}, {}
    for jobs in (1, 2, 3):
        out = tmp_path / f"jobs{jobs}" / "fixed"
        out.parent.mkdir()
        result = labellint.fix(src, out=out, tokenizer=tok, jobs=jobs, diff=True,
                               chunk_rows=5)
        assert result.exit_code == 0, result.render()
        outs[jobs] = _relative(out)
        texts[jobs] = (result.journal.read_text().replace(str(out), "OUT"),
                       result.render().replace(str(out), "OUT"))
    assert forked == [2 if kind == "shards" else 3] * 2  # jobs 2 and 3 forked, jobs 1 did not
    assert outs[1] == outs[2] == outs[3]
    assert texts[1] == texts[2] == texts[3]
    assert "LL401 row 14" in texts[1][1] and journal_rows(result.journal, "LL401") == [3, 14, 22]


def test_a_worker_failing_fails_the_fix_with_its_error_and_leaves_nothing(tok, tmp_path,
                                                                        monkeypatch):
    wrong, _ = _padded_wrong(tok)
    _shards(wrong, tmp_path / "shards")
    import sys

    fix_module = sys.modules["labellint.fix"]  # the module, not the function the package exports
    real = fix_module._fix_file

    def fail_second(src, path, target):
        if path.name == "part-1.parquet":
            raise labellint.LabelLintError(f"{path}: planted failure")
        return real(src, path, target)

    monkeypatch.setattr(fix_module, "_fix_file", fail_second)
    with pytest.raises(labellint.LabelLintError, match="part-1.parquet: planted failure"):
        labellint.fix(tmp_path / "shards", out=tmp_path / "fixed", tokenizer=tok, jobs=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shards"]


# -- labels shifted by the dataset (label_shift="dataset") --------------------------------------


def _shift_labels_rows(tok, *, shifted):
    """Rows of the Seq2Seq collator's batches with the shift_labels column transformers'
    Trainer adds for context parallelism (labels padded with -100, then [:, 1:]); `shifted=False`
    is the slip that copies labels unshifted."""
    from test_real_pipeline_verdicts import with_shift_labels

    rows = []
    features = sft_features(tok)
    for start in range(0, len(features), 4):
        batch = with_shift_labels(DataCollatorForSeq2Seq(tok, padding=True)(
            [{k: f[k] for k in ("input_ids", "attention_mask", "labels")}
             for f in features[start:start + 4]]), shifted=shifted)
        rows += [{k: batch[k][j].tolist() for k in batch} for j in range(len(batch["labels"]))]
    return rows


def test_a_shift_labels_column_copied_unshifted_is_shifted_only_with_unsafe_fixes(tok, tmp_path):
    wrong, right = (_shift_labels_rows(tok, shifted=s) for s in (False, True))
    src = write_parquet(wrong, tmp_path / "sp.parquet")
    assert codes(labellint.check(src, tokenizer=tok)) == {"LL302"}

    safe = labellint.fix(src, out=tmp_path / "safe.parquet", tokenizer=tok)
    fixed = labellint.fix(src, out=tmp_path / "fixed.parquet", tokenizer=tok,
                          unsafe_fixes=True)

    assert pq.read_table(tmp_path / "safe.parquet").to_pylist() == wrong
    assert next(r for r in safe.rules if r.code == "LL302").held == len(wrong)
    assert pq.read_table(tmp_path / "fixed.parquet").to_pylist() == right
    assert fixed.exit_code == 0, fixed.render()
    assert journal_rows(fixed.journal, "LL302") == list(range(len(wrong)))


@pytest.mark.parametrize("family", ["chatml", "llama3"])
def test_chat_labels_left_unshifted_for_a_loss_that_does_not_shift_are_shifted(family, tmp_path):
    from labellint.testing import chatml_tokenizer, llama3_tokenizer
    from test_chat import masked_rows

    tok = {"chatml": chatml_tokenizer, "llama3": llama3_tokenizer}[family]()
    wrong = masked_rows(tok)  # the template's masks, labels aligned for a model that shifts
    right = [dict(r, labels=r["labels"][1:] + [-100]) for r in wrong]  # torchtune's alignment
    src = write_parquet(wrong, tmp_path / "chat.parquet")
    assert "LL302" in codes(labellint.check(src, tokenizer=tok, label_shift="dataset"))

    result = labellint.fix(src, out=tmp_path / "fixed.parquet", tokenizer=tok,
                           label_shift="dataset", unsafe_fixes=True)

    assert pq.read_table(tmp_path / "fixed.parquet").to_pylist() == right
    assert result.exit_code == 0, result.render()


@pytest.mark.parametrize("family", ["chatml", "llama3"])
def test_a_masked_end_of_turn_is_trained_under_label_shift_dataset(family, tmp_path):
    from labellint.testing import chatml_tokenizer, llama3_tokenizer
    from test_chat import masked_rows

    make = {"chatml": chatml_tokenizer, "llama3": llama3_tokenizer}[family]

    def shifted(rows):
        return [dict(r, labels=r["labels"][1:] + [-100]) for r in rows]

    right = shifted(masked_rows(make()))
    wrong = shifted(masked_rows(make(end_in_generation=False)))
    src = write_parquet(wrong, tmp_path / "chat.parquet")
    tok = make()
    assert "LL603" in codes(labellint.check(src, tokenizer=tok, label_shift="dataset"))

    result = labellint.fix(src, out=tmp_path / "fixed.parquet", tokenizer=tok,
                           label_shift="dataset", unsafe_fixes=True)

    assert pq.read_table(tmp_path / "fixed.parquet").to_pylist() == right
    assert result.exit_code == 0, result.render()
    assert result.changed["LL603"].rows == len(wrong)


def test_an_eos_masked_with_the_padding_is_trained_under_label_shift_dataset(eos_pad_tok,
                                                                           tmp_path):
    tok = eos_pad_tok
    features = [{"input_ids": f["input_ids"]} for f in sft_features(tok)]
    rows = []
    for start in range(0, len(features), 4):
        batch = DataCollatorForLanguageModeling(tok, mlm=False)(features[start:start + 4])
        rows += [{"input_ids": batch["input_ids"][j].tolist(),
                  "attention_mask": batch["attention_mask"][j].tolist(),
                  "labels": batch["labels"][j].tolist()[1:] + [-100]}  # shifted for the loss
                 for j in range(len(batch["input_ids"]))]
    src = write_parquet(rows, tmp_path / "lm.parquet")
    assert "LL403" in codes(labellint.check(src, tokenizer=tok, label_shift="dataset"))

    result = labellint.fix(src, out=tmp_path / "fixed.parquet", tokenizer=tok,
                           label_shift="dataset", unsafe_fixes=True)

    fixed = pq.read_table(tmp_path / "fixed.parquet").to_pylist()
    for row, old, f in zip(fixed, rows, features):
        end = len(f["input_ids"]) - 1  # the row's own EOS; its target sits one place before
        expected = list(old["labels"])
        expected[end - 1] = tok.eos_token_id
        assert row["labels"] == expected
    assert "LL403" not in codes(labellint.check(tmp_path / "fixed.parquet", tokenizer=tok,
                                                label_shift="dataset"))
    assert result.changed["LL403"].rows == len(rows)
