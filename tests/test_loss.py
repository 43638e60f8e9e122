"""check_loss: the chunked reference, the forensics on real loss code, the LL9xx rules, the CLI.

Every mistake is made by real code (the blog recipe, a hand-written loop, a real Trainer, a real
collator) on tiny Llama and GPT-2 models built from configs; the forensics must name it.
"""

import json
import math
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import labellint  # noqa: E402
from labellint.loss.reference import naive_loss, stats_from_logits, to_tensors  # noqa: E402
from labellint.testing import tiny_gpt2, tiny_llama  # noqa: E402

V = 64
MODELS = {"llama": tiny_llama, "gpt2": tiny_gpt2}


def sft_batch(rows=3, width=12, seed=0, prompt=(2, 3, 5), lengths=(12, 9, 7)):
    """Right-padded SFT rows: BOS, prompt (masked), answer, EOS, padding (-100, mask 0)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.zeros(rows, width, dtype=torch.long)
    labels = torch.full((rows, width), -100)
    mask = torch.zeros(rows, width, dtype=torch.long)
    for r in range(rows):
        n = lengths[r % len(lengths)]
        ids[r, :n] = torch.randint(3, V, (n,), generator=g)
        ids[r, 0], ids[r, n - 1] = 1, 2
        mask[r, :n] = 1
        p = prompt[r % len(prompt)]
        labels[r, p:n] = ids[r, p:n]
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def hf_shifted_ce(logits, labels, **kwargs):
    """The correct loss, written out: shift, ignore -100, mean over targets."""
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), **kwargs)


# -- the reference ----------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(1, 3), width=st.integers(2, 9), vocab=st.integers(3, 40),
       chunk=st.integers(1, 30), shift=st.sampled_from(["model", "dataset"]),
       seed=st.integers(0, 2**16), masked=st.floats(0.0, 0.9))
def test_chunked_reference_equals_float64_naive(rows, width, vocab, chunk, shift, seed, masked):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(rows, width, vocab, generator=g) * 3
    labels = torch.randint(0, vocab, (rows, width), generator=g)
    labels[torch.rand(rows, width, generator=g) < masked] = -100
    batch = {"input_ids": torch.randint(0, vocab, (rows, width), generator=g), "labels": labels}
    expected = naive_loss(logits, labels, label_shift=shift)
    report = labellint.check_loss(batches=batch, outputs=logits, label_shift=shift, chunk=chunk)
    if math.isnan(expected):
        assert math.isnan(report.reference_loss)
        assert [f.code for f in report.findings] == ["LL902"]
    else:
        assert report.reference_loss == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("arch", MODELS)
def test_model_path_never_makes_the_full_logits(arch):
    """The body runs once; the head runs on the last position, then per chunk of positions."""
    model = MODELS[arch]()
    batch = sft_batch()
    calls = []
    head = model.get_output_embeddings()
    handle = head.register_forward_hook(lambda m, a, out: calls.append(out.shape[:-1].numel()))
    try:
        report = labellint.check_loss(model, batch, reported=1.0, chunk=5)
    finally:
        handle.remove()
    full = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    assert report.reference_loss == pytest.approx(naive_loss(full, batch["labels"]), rel=1e-6)
    # the model's own head on the last position, ours on it to check, then chunks of 5
    assert calls[:2] == [3, 3]
    assert max(calls[2:]) == 5 and sum(calls[2:]) == batch["input_ids"].numel()


def test_bfloat16_model_upcasts_per_chunk_and_gets_a_looser_tolerance():
    model = tiny_llama().to(torch.bfloat16)
    batch = sft_batch()
    report = labellint.check_loss(model, batch)
    assert report.ok and report.evidence.dtype == "bfloat16" and report.evidence.rtol == 2e-2
    fp32 = labellint.check_loss(tiny_llama(), batch)
    assert report.reference_loss == pytest.approx(fp32.reference_loss, rel=2e-2)


# -- correct loss code is clean ---------------------------------------------------------------


@pytest.mark.parametrize("arch", MODELS)
def test_the_models_own_loss_is_clean(arch):
    model = MODELS[arch]()
    report = labellint.check_loss(model, sft_batch())
    assert report.ok and not report.findings and report.matched == "reference"
    assert report.reported_loss == pytest.approx(report.reference_loss, rel=1e-5)
    assert report.supervised_tokens == int((sft_batch()["labels"][:, 1:] != -100).sum())


def test_uneven_micro_batches_with_the_models_own_loss_are_normalised_like_the_trainer():
    """Llama takes num_items_in_batch: its losses over a window sum to the token mean."""
    model = tiny_llama()
    window = [sft_batch(rows=1, seed=1, prompt=(1,)), sft_batch(rows=2, seed=2, prompt=(8,))]
    report = labellint.check_loss(model, window)
    assert report.ok and report.evidence.micro_batches == 2


def _trainer(model, tmp_path, cls=None):
    from transformers import Trainer, TrainingArguments

    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True,
                             per_device_train_batch_size=2, gradient_accumulation_steps=2)
    return (cls or Trainer)(model=model, args=args)


@pytest.mark.slow
def test_a_real_trainers_compute_loss_with_num_items_in_batch_is_clean(tmp_path):
    model = tiny_llama()
    trainer = _trainer(model, tmp_path)
    window = [sft_batch(rows=2, seed=1, prompt=(1, 2)), sft_batch(rows=2, seed=2, prompt=(8, 6))]
    report = labellint.check_loss(model, window, loss_fn=trainer.compute_loss)
    assert report.ok and not report.findings, str(report)
    assert report.evidence.reported_from == "loss_fn"


@pytest.mark.slow
def test_a_custom_compute_loss_that_ignores_num_items_in_batch_is_found(tmp_path):
    """The Trainer sums what compute_loss returns (the model takes loss kwargs): a per-micro-
    batch mean sums to the sum of the micro-batch means."""
    from transformers import Trainer

    class MyTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            return model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                         labels=inputs["labels"]).loss

    model = tiny_llama()
    trainer = _trainer(model, tmp_path, MyTrainer)
    window = [sft_batch(rows=2, seed=1, prompt=(1, 2)), sft_batch(rows=2, seed=2, prompt=(8, 6))]
    report = labellint.check_loss(model, window, loss_fn=trainer.compute_loss)
    assert [f.code for f in report.findings] == ["LL903"]
    assert report.matched == "sum_of_micro_batch_means"


# -- each mistake, made by real code, is named ------------------------------------------------


@pytest.mark.parametrize("arch", MODELS)
def test_the_blog_recipe_without_a_shift_is_named(arch):
    model = MODELS[arch]()
    batch = sft_batch()
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    loss_fct = torch.nn.CrossEntropyLoss()
    reported = loss_fct(logits.view(-1, V), batch["labels"].view(-1)).item()
    report = labellint.check_loss(model, batch, reported=reported)
    assert [f.code for f in report.findings] == ["LL901"] and report.matched == "no_shift"
    message = report.findings[0].message
    assert f"the reported {reported:.6g} equals the loss without shifting labels" in message
    assert f"({report.hypotheses['no_shift']:.4f})" in message and "does not shift" in message


def test_labels_shifted_in_the_data_and_again_by_the_model_are_named():
    model = tiny_llama()
    batch = sft_batch()
    shifted = torch.nn.functional.pad(batch["labels"][:, 1:], (0, 1), value=-100)
    reported = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                     labels=shifted).loss.item()
    report = labellint.check_loss(model, batch, reported=reported)
    assert report.matched == "double_shift" and [f.code for f in report.findings] == ["LL901"]


def test_labels_copied_from_input_ids_with_the_prompt_masked_count_padding():
    model = tiny_llama()
    batch = sft_batch()
    labels = batch["input_ids"].clone()        # a common hand-rolled collator
    for r, p in enumerate((2, 3, 5)):
        labels[r, :p] = -100                   # masks the prompt but not the padding
    reported = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                     labels=labels).loss.item()
    report = labellint.check_loss(model, batch, reported=reported)
    assert report.matched == "padding_included"


def test_the_language_modelling_collator_on_sft_data_counts_the_prompt(tok):
    """DataCollatorForLanguageModeling(mlm=False) makes labels = input_ids (padding -100)."""
    from transformers import DataCollatorForLanguageModeling, DataCollatorForSeq2Seq

    texts = [("question: what is the capital of france?", " paris."),
             ("translate to german: good morning.", " guten morgen."),
             ("user: hello there", " assistant: hi! how can i help you today?")]
    rows = []
    for prompt, answer in texts:
        p = tok(prompt)["input_ids"]
        a = tok(answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        rows.append({"input_ids": p + a, "labels": [-100] * len(p) + a})
    batch = DataCollatorForSeq2Seq(tok, return_tensors="pt")(rows)     # the right labels
    lm = DataCollatorForLanguageModeling(tok, mlm=False)([{"input_ids": r["input_ids"]}
                                                           for r in rows])
    model = tiny_llama(vocab_size=len(tok))
    reported = model(input_ids=lm["input_ids"], attention_mask=lm["attention_mask"],
                     labels=lm["labels"]).loss.item()
    report = labellint.check_loss(model, dict(batch), reported=reported)
    assert report.matched == "ignore_index_not_honoured"
    assert [f.code for f in report.findings] == ["LL901"]


@pytest.fixture(scope="module")
def trained():
    """A tiny Llama fitted to sft_batch(): confident predictions, so that the smoothing term
    differs from the cross-entropy (at random init both are near ln V)."""
    model = tiny_llama(hidden_size=32).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(20):
        model(**sft_batch()).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model.eval()


def test_label_smoothing_is_named_with_its_epsilon(trained):
    model = trained
    batch = sft_batch()
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    reported = hf_shifted_ce(logits, batch["labels"], label_smoothing=0.1).item()
    report = labellint.check_loss(model, batch, reported=reported)
    assert report.matched == "label_smoothing_0.1"


def test_a_mean_of_per_row_means_is_named():
    model = tiny_llama()
    batch = sft_batch()
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    per_token = hf_shifted_ce(logits, batch["labels"], reduction="none").view(3, -1)
    targets = (batch["labels"][:, 1:] != -100).sum(1)
    reported = (per_token.sum(1) / targets).mean().item()
    report = labellint.check_loss(model, batch, reported=reported)
    assert report.matched == "mean_of_row_means"
    assert [f.code for f in report.findings] == ["LL903"]


def test_reduction_none_then_mean_counts_every_position():
    model = tiny_gpt2()
    batch = sft_batch()
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    reported = hf_shifted_ce(logits, batch["labels"], reduction="none").mean().item()
    report = labellint.check_loss(model, batch, reported=reported)
    assert report.matched == "all_positions"


def test_a_count_of_unshifted_labels_as_the_denominator_is_named():
    """Pretraining labels = input_ids: position 0 is labelled but never a target."""
    model = tiny_llama()
    batch = sft_batch(prompt=(0,), lengths=(12, 12, 12))
    logits = model(input_ids=batch["input_ids"]).logits
    total = hf_shifted_ce(logits, batch["labels"], reduction="sum")
    reported = (total / (batch["labels"] != -100).sum()).item()
    report = labellint.check_loss(model, batch, reported=reported)
    assert report.matched == "unshifted_label_count"


def test_a_loop_averaging_micro_batch_means_is_named():
    model = tiny_llama()
    window = [sft_batch(rows=2, seed=1, prompt=(1, 2)), sft_batch(rows=1, seed=2, prompt=(9,)),
              sft_batch(rows=2, seed=3, prompt=(4, 3))]
    logged = 0.0
    for micro_batch in window:
        loss = model(**micro_batch).loss / len(window)
        logged += loss.item()
    report = labellint.check_loss(model, window, reported=logged)
    assert report.matched == "mean_of_micro_batch_means"
    assert [f.code for f in report.findings] == ["LL903"]
    assert "across the 3 micro-batches" in report.findings[0].message
    # per-micro-batch numbers, averaged, say the same
    per_micro = [model(**mb).loss.item() for mb in window]
    assert labellint.check_loss(model, window, reported=per_micro).matched == \
        "mean_of_micro_batch_means"


def test_dividing_by_the_accumulation_steps_twice_is_named():
    model = tiny_llama()
    window = [sft_batch(rows=2, seed=1), sft_batch(rows=2, seed=2)]
    n = sum(int((b["labels"][:, 1:] != -100).sum()) for b in window)
    logged = sum(model(**b, num_items_in_batch=n).loss.item() / len(window) for b in window)
    assert labellint.check_loss(model, window, reported=logged).matched == \
        "divided_by_accumulation_twice"


# -- what is not claimed ----------------------------------------------------------------------


def test_a_mistake_that_equals_the_reference_on_this_batch_is_not_claimed():
    """Without padding, 'padding included' is the reference: a number matching it is clean."""
    model = tiny_llama()
    batch = sft_batch(lengths=(12,))
    report = labellint.check_loss(model, batch, reported=labellint.check_loss(
        model, batch).reference_loss)
    assert report.ok and "padding_included" not in report.hypotheses
    one_row = sft_batch(rows=1, lengths=(12,))
    r = labellint.check_loss(model, one_row, reported=1.0)
    assert "mean_of_row_means" in r.evidence.verdict.coincident
    assert r.matched is None and [f.code for f in r.findings] == ["LL901"]
    assert "no common mistake reproduces it" in r.findings[0].message


def test_a_number_no_mistake_explains_is_a_plain_mismatch_with_the_closest():
    model = tiny_llama()
    report = labellint.check_loss(model, sft_batch(), reported=0.123)
    assert report.matched is None and not report.candidates
    (finding,) = report.findings
    assert finding.code == "LL901" and "closest:" in finding.message
    assert not report.ok
    with pytest.raises(labellint.LabelLintError, match="LL901"):
        report.raise_for_errors()


def test_the_report_carries_the_numbers():
    model = tiny_llama()
    batch = sft_batch()
    report = labellint.check_loss(model, batch, reported=2.5)
    d = json.loads(report.to_json())
    assert d["reference_loss"] == pytest.approx(report.reference_loss)
    assert d["reported_loss"] == 2.5 and d["supervised_tokens"] == report.supervised_tokens
    assert set(d["hypotheses"]) == set(report.hypotheses) and "no_shift" in d["hypotheses"]
    assert d["findings"][0]["code"] == "LL901" and d["summary"]["errors"] == 1


# -- NaN and init -----------------------------------------------------------------------------


def test_a_window_without_targets_is_nan_with_its_cause():
    model = tiny_llama()
    batch = sft_batch()
    batch["labels"][:] = -100
    report = labellint.check_loss(model, batch)
    assert [f.code for f in report.findings] == ["LL902"]
    assert math.isnan(report.reference_loss)
    assert "no supervised target in the window" in report.findings[0].message
    assert json.loads(report.to_json())["reference_loss"] is None


def test_a_micro_batch_without_targets_makes_a_mean_of_means_nan():
    model = tiny_llama()
    empty = sft_batch(rows=1, seed=2)
    empty["labels"][:] = -100
    window = [sft_batch(rows=2, seed=1), empty]
    logged = sum(model(**b).loss.item() / 2 for b in window)   # nan
    report = labellint.check_loss(model, window, reported=logged)
    assert [f.code for f in report.findings] == ["LL902"]
    assert "micro-batch 1 of 2 has no supervised target" in report.findings[0].message


def test_infinite_logits_are_named_with_their_rows():
    batch = to_tensors(sft_batch())
    logits = torch.randn(3, 12, V)
    logits[1, 4, 7] = float("inf")
    report = labellint.check_loss(batches=batch, outputs=logits)
    assert [f.code for f in report.findings] == ["LL902"]
    assert "inf or NaN at 1 positions (rows 1)" in report.findings[0].message


def test_a_fresh_model_is_near_ln_vocab_and_a_broken_init_is_flagged():
    batch = sft_batch()
    fresh = tiny_llama(vocab_size=V, hidden_size=32, initializer_range=0.02)
    report = labellint.check_loss(fresh, batch, at_init=True)
    assert report.ok and not report.findings
    assert report.reference_loss == pytest.approx(math.log(V), rel=0.05)
    broken = tiny_llama(vocab_size=V, hidden_size=64, initializer_range=1.0)  # std 1, not 0.02
    flagged = labellint.check_loss(broken, batch, at_init=True)
    assert [f.code for f in flagged.findings] == ["LL904"] and flagged.ok  # a warning
    assert "above ln(64)" in flagged.findings[0].message
    assert not labellint.check_loss(broken, batch, at_init=False).findings  # not judged
    # Unknown: a loss far above ln V is judged all the same (no trained model is there)
    assert [f.code for f in labellint.check_loss(broken, batch).findings] == ["LL904"]


# -- inputs -----------------------------------------------------------------------------------


def test_a_packed_batch_gets_no_attention_mask():
    model = tiny_llama()
    seen = []
    handle = model.register_forward_pre_hook(lambda m, a, kw: seen.append(set(kw)),
                                             with_kwargs=True)
    ids = torch.randint(3, V, (1, 12))
    position_ids = torch.tensor([[0, 1, 2, 3, 4, 0, 1, 2, 0, 1, 2, 3]])
    labels = ids.clone()
    labels[0, [0, 5, 8]] = -100
    try:
        report = labellint.check_loss(model, {"input_ids": ids, "position_ids": position_ids,
                                              "labels": labels})
    finally:
        handle.remove()
    assert report.ok
    assert all("attention_mask" not in kw and "position_ids" in kw for kw in seen)


def test_outputs_are_used_without_a_forward_pass():
    model = tiny_llama()
    batch = sft_batch()
    out = model(**batch)
    calls = []
    handle = model.register_forward_hook(lambda *a: calls.append(1))
    try:
        report = labellint.check_loss(model, batch, outputs=[out], reported=out.loss)
    finally:
        handle.remove()
    assert not calls and report.ok
    alone = labellint.check_loss(batches=batch, outputs=out.logits, reported=out.loss.item())
    assert alone.reference_loss == pytest.approx(report.reference_loss, rel=1e-7)


def test_stats_from_log_probs_equal_stats_from_logits():
    """TRL models may return log-probs: log_softmax of log-probs is the same distribution."""
    batch = to_tensors(sft_batch())
    logits = torch.randn(3, 12, V)
    a = stats_from_logits(logits, batch)
    b = stats_from_logits(torch.log_softmax(logits, -1), batch)
    np.testing.assert_allclose(a.nll_ref[a.ok_ref], b.nll_ref[b.ok_ref], rtol=1e-5)


@pytest.mark.parametrize("bad, message", [
    (dict(batches={"input_ids": [[1, 2]]}), "no 'labels'"),
    (dict(batches={"input_ids": [[1, 2], [3]], "labels": [[1, 2], [3]]}), "differ in length"),
    (dict(batches={"input_ids": [[1, 2]], "labels": [[-1, 2]]}), "labels hold -1"),
    (dict(batches=[1, 2]), "batch dict"),
    (dict(batches={"input_ids": [[1, 2]], "labels": [[1, 2]]}, reported=[1.0, 2.0]),
     "2 reported numbers for 1 micro-batches"),
    (dict(batches={"input_ids": [[1, 2]], "labels": [[1, 2]]}, window="median"), "window"),
    (dict(batches={"input_ids": [[1, 2]], "labels": [[1, 2]]}, select=["LL103"]),
     "judge data, not a loss"),
])
def test_bad_input_is_one_clear_error(bad, message):
    with pytest.raises(labellint.LabelLintError, match=message):
        labellint.check_loss(tiny_llama(), **bad)


def test_loss_rules_do_not_run_in_the_data_engine():
    data_rules = {r.code for r in labellint.select_rules()}
    assert not {c for c in data_rules if c.startswith("LL9")}
    with pytest.raises(labellint.LabelLintError, match="labellint loss"):
        labellint.check({"input_ids": [[1, 2]]}, select=["LL9"])
    assert {r.code for r in labellint.select_rules(kind="loss")} == {
        "LL901", "LL902", "LL903", "LL904"}


# -- the command line -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny Llama and a tokenizer saved with safetensors, and an SFT jsonl dataset."""
    from labellint.testing import tiny_tokenizer

    root = tmp_path_factory.mktemp("loss_cli")
    tok = tiny_tokenizer()
    model = tiny_llama(vocab_size=len(tok))
    model.save_pretrained(root / "model", safe_serialization=True)
    tok.save_pretrained(root / "model")
    rows = []
    for i, text in enumerate(["the quick brown fox jumps", "what is the capital of france?",
                              "write a haiku about the sea.", "hello there assistant: hi!"]):
        ids = tok(text)["input_ids"] + [tok.eos_token_id]
        keep = 2 + i
        rows.append({"input_ids": ids, "labels": [-100] * keep + ids[keep:]})
    data = root / "sft.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root, model, rows


def _cli(capsys, *args):
    from labellint.cli import main

    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_loss_checks_the_models_own_loss_and_a_reported_number(saved, capsys):
    root, model, rows = saved
    base = ("loss", "--model", str(root / "model"), "--data", str(root / "sft.jsonl"),
            "--batch-size", "2", "--accumulation", "2", "--device", "cpu")
    code, out, err = _cli(capsys, *base, "--format", "json")
    assert code == 0, err
    result = json.loads(out)
    assert result["micro_batches"] == 2 and result["findings"] == []
    # the same window by hand: the labels' targets after the shift
    assert result["supervised_tokens"] == sum(
        sum(1 for x in r["labels"][1:] if x != -100) for r in rows)
    code, out, _ = _cli(capsys, *base, "--reported", str(result["hypotheses"]["no_shift"]))
    assert code == 1 and "LL901" in out and "does not shift" in out


def test_cli_loss_errors_are_one_line(saved, tmp_path, capsys):
    root, _, _ = saved
    for args in (["loss", "--model", str(tmp_path), "--data", str(root / "sft.jsonl")],
                 ["loss", "--model", str(root / "model"), "--data", str(tmp_path / "x.jsonl")],
                 ["loss", "--model", str(root / "model"), "--data", str(root / "sft.jsonl"),
                  "--batch-size", "99"],
                 ["check", str(root / "sft.jsonl"), "--select", "LL9"]):
        code, _, err = _cli(capsys, *args)
        assert code == 2, err
        assert err.startswith("labellint: error:") and err.count("\n") == 1
    assert "labellint loss" in _cli(capsys, "check", str(root / "sft.jsonl"), "--select",
                                    "LL9")[2]


@pytest.mark.slow
def test_cli_loss_runs_as_a_command(saved):
    """The installed entry point, in a fresh process: exit 0 and the text report."""
    root, _, _ = saved
    result = subprocess.run(
        [sys.executable, "-m", "labellint", "loss", "--model", str(root / "model"), "--data",
         str(root / "sft.jsonl"), "--batch-size", "4", "--device", "cpu"],
        capture_output=True, text=True, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert "matches the reference" in result.stdout


def test_cli_loss_refuses_pickled_weights(saved, tmp_path, capsys):
    """Only safetensors load: a pytorch_model.bin (pickle) is never unpickled."""
    root, model, _ = saved
    folder = tmp_path / "bin"
    folder.mkdir()
    model.config.save_pretrained(folder)
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    code, _, err = _cli(capsys, "loss", "--model", str(folder), "--data",
                        str(root / "sft.jsonl"), "--batch-size", "2")
    assert code == 2 and "cannot load" in err


def test_ids_past_the_embedding_table_are_one_clear_error():
    model = tiny_llama()
    rows = model.get_input_embeddings().weight.shape[0]
    batch = {"input_ids": [[1, 5, rows + 3]], "labels": [[-100, 5, rows + 3]]}
    with pytest.raises(labellint.LabelLintError, match=f"input id {rows + 3} is past"):
        labellint.check_loss(model, batch)
