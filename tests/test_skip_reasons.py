"""Skip reasons and notes on real tokenizers say what the user gave, never to give it again."""

import pytest

datasets = pytest.importorskip("datasets")
pytest.importorskip("transformers")

from labellint.cli import main  # noqa: E402

datasets.disable_progress_bars()

INST_TEMPLATE = ("{{ bos_token }}{% for m in messages %}{% if m['role']=='user' %}"
                 "{{ '[INST] ' + m['content'] + ' [/INST]' }}{% else %}"
                 "{{ m['content'] + eos_token }}{% endif %}{% endfor %}")


def _run(capsys, *argv):
    code = main(["check", *map(str, argv)])
    out = capsys.readouterr()
    return code, out.out + out.err


def _skipped(output, code):
    line = next(ln for ln in output.splitlines() if ln.startswith("skipped for "))
    return next(part.split(": ", 1)[1] for part in line.split(": ", 1)[1].split("; ")
                if part.startswith(f"{code}: "))


def _plain_rows(tok, tmp_path):
    """Unlabelled rows of text ending with EOS, saved as a datasets folder."""
    ids = [tok(f"hello world number {i}" + tok.eos_token)["input_ids"] for i in range(8)]
    path = tmp_path / "rows"
    datasets.Dataset.from_dict({"input_ids": ids}).save_to_disk(str(path))
    return path


@pytest.mark.parametrize("name", ["llama3", "llama2", "gpt2"])
def test_a_tokenizer_without_a_pad_token_is_named_as_the_reason_pad_is_eos_is_skipped(
        real_tokenizers, tmp_path, capsys, name):
    real = real_tokenizers[name]
    assert real.tokenizer.pad_token_id is None
    _, output = _run(capsys, _plain_rows(real.tokenizer, tmp_path), "--tokenizer", real.path)

    reason = _skipped(output, "LL410")
    assert "the tokenizer has no pad token" in reason and "--pad-id" in reason, output
    assert "give a tokenizer" not in reason


def test_the_pad_id_masking_note_does_not_claim_a_pad_id_was_masked_when_none_is_known(
        real_tokenizers, tmp_path, capsys):
    real = real_tokenizers["llama3"]
    _, output = _run(capsys, _plain_rows(real.tokenizer, tmp_path), "--tokenizer", real.path,
                     "--missing-labels", "pad-id")

    note = next(ln for ln in output.splitlines() if ln.startswith("note for "))
    assert "every pad id masked" not in note
    assert "no pad id is known" in note and "--pad-id" in note, output


def test_the_pad_id_masking_note_stands_when_a_pad_id_is_given(real_tokenizers, tmp_path, capsys):
    real = real_tokenizers["llama3"]
    _, output = _run(capsys, _plain_rows(real.tokenizer, tmp_path), "--tokenizer", real.path,
                     "--missing-labels", "pad-id", "--pad-id", real.tokenizer.eos_token_id)

    note = next(ln for ln in output.splitlines() if ln.startswith("note for "))
    assert "every pad id masked" in note, output


def test_an_inst_template_is_named_as_unreadable_in_the_chat_rules_skip_reasons(
        real_tokenizers, tmp_path, capsys):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(real_tokenizers["llama2"].path)
    tok.chat_template = INST_TEMPLATE
    tok.save_pretrained(tmp_path / "tok")
    rows = []
    for i in range(8):
        text = tok.apply_chat_template([{"role": "user", "content": f"q {i}"},
                                        {"role": "assistant", "content": f"a {i}"}],
                                       tokenize=False)
        rows.append(tok(text, add_special_tokens=False)["input_ids"])
    datasets.Dataset.from_dict({"input_ids": rows, "labels": rows}).save_to_disk(
        str(tmp_path / "inst"))

    _, output = _run(capsys, tmp_path / "inst", "--tokenizer", tmp_path / "tok")

    facts = next(ln for ln in output.splitlines() if ln.startswith("facts for "))
    assert "could not be read" in facts
    for rule in ("LL601", "LL602", "LL603"):
        reason = _skipped(output, rule)
        assert "could not be read" in reason, output
        assert "give a tokenizer" not in reason
