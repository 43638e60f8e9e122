"""LabelLintCallback in real Trainer and SFTTrainer runs: tiny Llama models on CPU, real
collators, real training steps.

Each broken run plants one mistake as it happens in real code and must stop with that rule,
before the first optimizer step for data, at the first step for the loss; clean runs must train
on exactly the batches, in exactly the order, they would have had without the callback.
"""

from __future__ import annotations

import random

import datasets
import pytest
import torch
from transformers import (
    DataCollatorForLanguageModeling,
    DataCollatorForSeq2Seq,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from labellint import LabelLintError
from labellint.integrations.transformers import LabelLintCallback, first_batches
from labellint.testing import tiny_llama, tiny_tokenizer

trl = pytest.importorskip("trl")
from trl import SFTConfig, SFTTrainer  # noqa: E402

# Every test here trains with a Trainer or runs pytest in a process that imports
# transformers: `-m "not slow"` leaves them to CI.
pytestmark = pytest.mark.slow

WORDS = ("the cat sat on a mat while rain fell over paris and a spider with eight legs said "
         "guten morgen to the sea").split()


def pairs(n: int = 24, seed: int = 0) -> list[tuple[str, str]]:
    """Prompt/answer pairs of widely different lengths, so micro-batches differ in targets."""
    rng = random.Random(seed)
    return [(" ".join(rng.choices(WORDS, k=rng.randint(3, 12))) + " answer:",
             " " + " ".join(rng.choices(WORDS, k=rng.choice([1, 2, 3, 20, 30]))))
            for _ in range(n)]


def tokenized(tok, *, labels: bool = True, max_length: int | None = None) -> datasets.Dataset:
    """The usual SFT preprocessing: prompt masked with -100, answer and EOS trained."""
    rows = []
    for prompt, answer in pairs():
        p = tok(prompt)["input_ids"]
        ids = p + tok(answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        row = {"input_ids": ids[:max_length], "attention_mask": [1] * len(ids[:max_length])}
        if labels:
            row["labels"] = ([-100] * len(p) + ids[len(p):])[:max_length]
        rows.append(row)
    return datasets.Dataset.from_list(rows)


def prompt_completion() -> datasets.Dataset:
    data = pairs()
    return datasets.Dataset.from_dict({"prompt": [p for p, _ in data],
                                       "completion": [a for _, a in data]})


def label_clone_collator(tok):
    """The collator of many blog posts: pad, then labels = input_ids (padding included)."""
    def collate(rows):
        batch = tok.pad({"input_ids": [r["input_ids"] for r in rows]}, return_tensors="pt")
        batch["labels"] = batch["input_ids"].clone()
        return batch
    return collate


def response_template_collator(tok, template: str):
    """Old TRL's DataCollatorForCompletionOnlyLM: train what follows the response template's
    token ids, and mask the whole row when they are not found."""
    key = tok(template, add_special_tokens=False)["input_ids"]

    def collate(rows):
        batch = tok.pad({"input_ids": [r["input_ids"] for r in rows]}, return_tensors="pt")
        labels = batch["input_ids"].clone()
        labels[batch["attention_mask"] == 0] = -100
        for i, ids in enumerate(batch["input_ids"].tolist()):  # a few rows of a test batch
            at = next((j for j in range(len(ids)) if ids[j:j + len(key)] == key), None)
            labels[i, : len(ids) if at is None else at + len(key)] = -100
        batch["labels"] = labels
        return batch
    return collate


class Seen(TrainerCallback):
    """What the model is trained on, and the random state training starts from."""

    def __init__(self):
        self.batches: list[torch.Tensor] = []
        self.rng_at_start = None
        self.logged: set[str] = set()  # what a tracker's callback hears

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logged |= set(logs or {})

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.rng_at_start = torch.get_rng_state()
        model.register_forward_pre_hook(self._record, with_kwargs=True)

    def _record(self, module, args, kwargs):
        if module.training:
            self.batches.append(kwargs["input_ids"].clone())


def build(kind: str, tmp_path, tok, *, data=None, collator=None, callbacks=(), cls=None,
          accumulation: int = 1, steps: int = 2, batch_size: int = 4, save: bool = False,
          **extra):
    model = tiny_llama(vocab_size=len(tok))
    common = dict(output_dir=str(tmp_path / "out"), report_to=[], use_cpu=True, bf16=False,
                  per_device_train_batch_size=batch_size, max_steps=steps,
                  gradient_accumulation_steps=accumulation, logging_steps=50,
                  save_strategy="steps" if save else "no", save_steps=1, seed=0, **extra)
    if kind == "trainer":
        return (cls or Trainer)(
            model=model, args=TrainingArguments(**common), processing_class=tok,
            train_dataset=tokenized(tok) if data is None else data,
            data_collator=collator or DataCollatorForSeq2Seq(tok), callbacks=list(callbacks))
    return (cls or SFTTrainer)(
        model=model, args=SFTConfig(**common), processing_class=tok,
        train_dataset=prompt_completion() if data is None else data,
        data_collator=collator, callbacks=list(callbacks))


def checkpoints(tmp_path) -> list[str]:
    out = tmp_path / "out"
    return sorted(p.name for p in out.iterdir()) if out.exists() else []


# -- clean runs --------------------------------------------------------------------------------

CLEAN = {
    "trainer": ("trainer", {}),
    "trainer-workers": ("trainer", {"dataloader_num_workers": 1,
                                    "dataloader_persistent_workers": True}),
    "trainer-accumulation": ("trainer", {"accumulation": 2}),
    "sft": ("sft", {}),
    "sft-accumulation": ("sft", {"accumulation": 2}),
    "sft-padding-free": ("sft", {"padding_free": True, "max_length": None}),
    "sft-packing": ("sft", {"packing": True, "max_length": 128, "accumulation": 2}),
}


@pytest.mark.parametrize("case", list(CLEAN))
def test_a_clean_run_trains_on_the_same_batches_in_the_same_order(tmp_path, case):
    kind, extra = CLEAN[case]
    tok = tiny_tokenizer()
    without = Seen()
    build(kind, tmp_path / "a", tok, callbacks=[without], steps=3, **extra).train()
    lint, seen = LabelLintCallback(batches=8, config=False), Seen()
    trainer = build(kind, tmp_path / "b", tok, callbacks=[lint, seen], steps=3, **extra)

    trainer.train()

    assert lint.report is not None and lint.report.findings == [], str(lint.report)
    assert lint.loss_report is not None and lint.loss_report.ok, str(lint.loss_report)
    assert lint.loss_report.evidence.micro_batches == extra.get("accumulation", 1)
    assert trainer.state.global_step == 3
    assert len(seen.batches) == len(without.batches) > 0
    assert all(torch.equal(a, b) for a, b in zip(seen.batches, without.batches))
    assert torch.equal(seen.rng_at_start, without.rng_at_start)
    assert not trainer.model._forward_hooks  # the capture hook is gone after the first step
    assert {"labellint/errors", "labellint/reference_loss"} <= seen.logged


def test_the_checked_batches_are_the_ones_the_model_gets(tmp_path):
    tok = tiny_tokenizer()
    seen = Seen()
    trainer = build("trainer", tmp_path, tok, callbacks=[seen], steps=3)
    expected = first_batches(trainer.get_train_dataloader(), 3)

    trainer.train()

    assert [b["input_ids"].tolist() for b in expected] == [b.tolist() for b in seen.batches]


# -- broken data stops before the first step ---------------------------------------------------


def broken(kind: str, defect: str):
    """(tokenizer, build arguments) planting one data mistake the way real code makes it."""
    if defect == "labels-on-padding":
        tok = tiny_tokenizer()
        if kind == "trainer":  # padding labels with the pad id instead of -100
            pad = tok.pad_token_id
            return tok, {"collator": DataCollatorForSeq2Seq(tok, label_pad_token_id=pad)}
        return tok, {"collator": label_clone_collator(tok)}
    if defect == "all-masked":
        tok = tiny_tokenizer()
        if kind == "trainer":  # answers truncated away: only prompt tokens are left
            return tok, {"data": tokenized(tok, max_length=3)}
        # TRL drops rows truncated to no answer; the completion-only collator people copy from
        # old TRL masks every label when the response template is not found as tokenized alone
        return tok, {"collator": response_template_collator(tok, "answer:")}
    if defect == "pad-is-eos":  # the language-modelling collator masks every pad id: EOS too
        tok = tiny_tokenizer(pad_is_eos=True)
        lm = DataCollatorForLanguageModeling(tok, mlm=False)
        if kind == "trainer":
            return tok, {"data": tokenized(tok, labels=False), "collator": lm}
        return tok, {"collator": lambda rows: lm([{"input_ids": r["input_ids"]} for r in rows])}
    raise AssertionError(defect)


DEFECTS = {"labels-on-padding": "LL103", "all-masked": "LL102", "pad-is-eos": "LL403"}


@pytest.mark.parametrize("kind", ["trainer", "sft"])
@pytest.mark.parametrize("defect", list(DEFECTS))
def test_broken_data_stops_training_before_the_first_step(tmp_path, kind, defect):
    tok, plan = broken(kind, defect)
    trainer = build(kind, tmp_path, tok, callbacks=[LabelLintCallback(config=False)], save=True,
                    **plan)
    before = [p.detach().clone() for p in trainer.model.parameters()]

    with pytest.raises(LabelLintError) as stop:
        trainer.train()

    message = str(stop.value)
    assert message.startswith("training stopped before the first step")
    assert DEFECTS[defect] in message and "help:" in message
    assert trainer.state.global_step == 0
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.model.parameters()))
    assert checkpoints(tmp_path) == []


def test_fail_on_none_logs_the_findings_and_trains(tmp_path):
    tok, plan = broken("trainer", "labels-on-padding")
    lint = LabelLintCallback(fail_on=None, config=False)
    trainer = build("trainer", tmp_path, tok, callbacks=[lint], **plan)

    trainer.train()

    assert trainer.state.global_step == 2
    first = trainer.state.log_history[0]
    assert first["labellint/errors"] >= 1
    assert first["labellint/LL103_labels-on-padding_rows"] == \
        next(f for f in lint.report.findings if f.code == "LL103").count_rows > 0


def test_fail_on_warning_stops_on_a_warning(tmp_path):
    tok = tiny_tokenizer()
    data = tokenized(tok)
    data = data.map(lambda r: {"input_ids": r["input_ids"][:-1], "labels": r["labels"][:-1],
                               "attention_mask": r["attention_mask"][:-1]})  # EOS dropped
    build("trainer", tmp_path / "a", tok, data=data,
          callbacks=[LabelLintCallback(config=False)]).train()  # a warning: trains

    with pytest.raises(LabelLintError, match="LL404"):
        build("trainer", tmp_path / "b", tok, data=data,
              callbacks=[LabelLintCallback(fail_on="warning", config=False)]).train()


def test_pyproject_settings_apply(tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text('[tool.labellint]\nignore = ["labels-on-padding"]\n')
    monkeypatch.chdir(tmp_path)
    tok, plan = broken("trainer", "labels-on-padding")
    lint = LabelLintCallback()
    trainer = build("trainer", tmp_path, tok, callbacks=[lint], **plan)

    trainer.train()

    assert "LL103" not in {f.code for f in lint.report.findings}
    assert trainer.state.global_step == 2


@pytest.mark.parametrize("bad, message", [
    ({"batches": 0}, "batches must be a count"),
    ({"fail_on": "sometimes"}, "fail_on must be one of"),
    ({"select": ["LL999"]}, "LL999"),
])
def test_bad_arguments_are_one_clear_error(bad, message):
    with pytest.raises(LabelLintError, match=message):
        LabelLintCallback(config=False, **bad)


# -- the loss of the first step ---------------------------------------------------------------


def no_shift_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
    """The loss of many tutorials: cross-entropy of logits[t] against labels[t]."""
    labels = inputs.pop("labels")
    outputs = model(**inputs)
    logits = outputs.logits
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                             labels.reshape(-1), ignore_index=-100)
    return (loss, outputs) if return_outputs else loss


def per_micro_batch_mean(self, model, inputs, return_outputs=False, num_items_in_batch=None):
    """Each micro-batch's own token mean, which the Trainer then averages over the window."""
    outputs = model(**inputs)
    return (outputs.loss, outputs) if return_outputs else outputs.loss


def fused_per_micro_batch_mean(self, model, inputs, return_outputs=False,
                               num_items_in_batch=None):
    """The same through TRL's fused LM head: per-target log-probs, no logits."""
    outputs = model(**inputs, use_cache=False, fused_lm_head=True)
    loss = -outputs.log_probs.sum() / outputs.label_mask.sum()
    return (loss, outputs) if return_outputs else loss


def trainer_with(kind, compute_loss, **attrs):
    base = Trainer if kind == "trainer" else SFTTrainer
    return type(f"Custom{base.__name__}", (base,), {"compute_loss": compute_loss, **attrs})


@pytest.mark.parametrize("kind", ["trainer", "sft"])
def test_a_compute_loss_without_a_shift_stops_at_the_first_step(tmp_path, kind):
    tok = tiny_tokenizer()
    lint = LabelLintCallback(config=False)
    trainer = build(kind, tmp_path, tok, cls=trainer_with(kind, no_shift_loss), callbacks=[lint],
                    save=True)

    with pytest.raises(LabelLintError, match="LL901") as stop:
        trainer.train()

    assert "training stopped at step 1" in str(stop.value)
    assert lint.loss_report.matched == "no_shift"
    assert trainer.state.global_step == 1
    assert checkpoints(tmp_path) == []  # save_steps=1: the stop comes before the save


@pytest.mark.parametrize("kind, compute_loss", [
    ("trainer", per_micro_batch_mean),
    ("sft", fused_per_micro_batch_mean),
])
def test_a_mean_of_micro_batch_means_under_accumulation_is_named(tmp_path, kind, compute_loss):
    tok = tiny_tokenizer()
    lint = LabelLintCallback(config=False)
    # loss_is_scaled_for_ga=False: the Trainer divides each micro-batch's mean by the steps.
    cls = trainer_with(kind, compute_loss, loss_is_scaled_for_ga=False)
    trainer = build(kind, tmp_path, tok, cls=cls, callbacks=[lint], accumulation=4,
                    batch_size=2)

    with pytest.raises(LabelLintError, match="LL903"):
        trainer.train()

    report = lint.loss_report
    assert len(set(report.evidence.micro_supervised)) > 1  # the precondition of the mistake
    assert report.matched == "mean_of_micro_batch_means"
    assert report.reported_loss == pytest.approx(report.hypotheses["mean_of_micro_batch_means"],
                                                 rel=1e-3)


def test_a_loss_mismatch_is_logged_when_not_failing(tmp_path):
    tok = tiny_tokenizer()
    lint = LabelLintCallback(fail_on=None, config=False)
    trainer = build("trainer", tmp_path, tok, cls=trainer_with("trainer", no_shift_loss),
                    callbacks=[lint])

    trainer.train()

    assert trainer.state.global_step == 2
    entry = next(e for e in trainer.state.log_history if "labellint/reference_loss" in e)
    assert entry["labellint/loss_errors"] == 1 and entry["labellint/LL901_loss-mismatch"] == 1
    assert entry["labellint/reference_loss"] == pytest.approx(lint.loss_report.reference_loss)


@pytest.mark.parametrize("kind, extra", [
    ("trainer", {"label_smoothing_factor": 0.1}),
    ("sft", {"loss_type": "dft"}),
])
def test_a_loss_other_than_cross_entropy_by_choice_is_not_a_mismatch(tmp_path, kind, extra):
    tok = tiny_tokenizer()
    lint = LabelLintCallback(config=False)
    trainer = build(kind, tmp_path, tok, callbacks=[lint], **extra)

    trainer.train()

    assert trainer.state.global_step == 2
    assert lint.report.findings == [] and lint.loss_report is None


def test_a_router_auxiliary_loss_is_not_a_mismatch(tmp_path):
    from transformers import MixtralConfig, MixtralForCausalLM

    tok = tiny_tokenizer()
    torch.manual_seed(0)
    model = MixtralForCausalLM(MixtralConfig(
        vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2, num_local_experts=4,
        num_experts_per_tok=2, output_router_logits=True, router_aux_loss_coef=0.5))
    lint = LabelLintCallback(config=False)
    trainer = Trainer(model=model, processing_class=tok, train_dataset=tokenized(tok),
                      data_collator=DataCollatorForSeq2Seq(tok), callbacks=[lint],
                      args=TrainingArguments(output_dir=str(tmp_path), report_to=[],
                                             use_cpu=True, max_steps=2, save_strategy="no"))

    trainer.train()

    assert trainer.state.global_step == 2 and lint.loss_report is None


# -- what the callback must leave alone ----------------------------------------------------------


def test_models_that_are_not_causal_lms_pass_through_unchecked(tmp_path):
    from transformers import (
        BertConfig,
        BertForTokenClassification,
        DataCollatorForTokenClassification,
        Seq2SeqTrainer,
        Seq2SeqTrainingArguments,
        T5Config,
        T5ForConditionalGeneration,
    )

    tok = tiny_tokenizer()
    torch.manual_seed(0)
    t5 = T5ForConditionalGeneration(T5Config(
        vocab_size=len(tok), d_model=16, d_ff=32, d_kv=8, num_layers=1, num_heads=2,
        decoder_start_token_id=tok.pad_token_id, pad_token_id=tok.pad_token_id))
    seq2seq = datasets.Dataset.from_list([
        {"input_ids": tok(p)["input_ids"], "labels": tok(a)["input_ids"]} for p, a in pairs()])
    lint = LabelLintCallback(config=False)
    Seq2SeqTrainer(model=t5, processing_class=tok, train_dataset=seq2seq,
                   data_collator=DataCollatorForSeq2Seq(tok, model=t5), callbacks=[lint],
                   args=Seq2SeqTrainingArguments(output_dir=str(tmp_path / "t5"), report_to=[],
                                                 use_cpu=True, max_steps=2,
                                                 save_strategy="no")).train()
    assert lint.report is None and lint.loss_report is None

    bert = BertForTokenClassification(BertConfig(
        vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_labels=3))
    tagged = datasets.Dataset.from_list([
        {"input_ids": (ids := tok(p)["input_ids"]), "labels": [i % 3 for i in range(len(ids))]}
        for p, _ in pairs()])
    lint = LabelLintCallback(config=False)
    trainer = Trainer(model=bert, processing_class=tok, train_dataset=tagged,
                      data_collator=DataCollatorForTokenClassification(tok), callbacks=[lint],
                      args=TrainingArguments(output_dir=str(tmp_path / "bert"), report_to=[],
                                             use_cpu=True, max_steps=2, save_strategy="no"))
    trainer.train()
    assert trainer.state.global_step == 2 and lint.report is None


def test_a_deliberate_extra_loss_term_is_logged_not_stopped(tmp_path):
    def loss_with_z_term(outputs, labels, num_items_in_batch=None):
        logits = outputs.logits[:, :-1].float()
        target = labels[:, 1:]
        ce = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                               target.reshape(-1), ignore_index=-100,
                                               reduction="sum") / num_items_in_batch
        z = torch.logsumexp(logits, dim=-1)[target != -100].pow(2).mean()
        return ce + 1e-3 * z  # a z-loss, as PaLM trains with

    tok = tiny_tokenizer()
    lint = LabelLintCallback(config=False)
    trainer = build("trainer", tmp_path, tok, callbacks=[lint])
    trainer.compute_loss_func = loss_with_z_term

    trainer.train()

    assert trainer.state.global_step == 2
    assert [f.code for f in lint.loss_report.findings] == ["LL901"]
    assert lint.loss_report.matched is None


def test_the_trainers_model_beats_a_model_path_in_the_table(tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text('[tool.labellint]\nmodel = "no/such/model"\n')
    monkeypatch.chdir(tmp_path)
    tok = tiny_tokenizer()
    lint = LabelLintCallback()
    trainer = build("trainer", tmp_path, tok, callbacks=[lint])

    trainer.train()

    assert trainer.state.global_step == 2
    assert lint.report.sources[0].facts.model_vocab_size == len(tok)


def test_a_causal_lm_labellint_does_not_know_is_checked_when_declared(tmp_path, monkeypatch):
    import transformers.models.auto.modeling_auto as auto

    from labellint.testing import tiny_gpt2

    # GPT2LMHeadModel known only through transformers' mapping: as a custom model would be.
    monkeypatch.setattr(auto, "MODEL_FOR_CAUSAL_LM_MAPPING_NAMES", {})
    tok = tiny_tokenizer()
    for declared in (False, True):
        lint = LabelLintCallback(config=False, causal_lm=declared or None)
        trainer = Trainer(model=tiny_gpt2(vocab_size=len(tok)), processing_class=tok,
                          train_dataset=tokenized(tok), data_collator=DataCollatorForSeq2Seq(tok),
                          callbacks=[lint], args=TrainingArguments(
                              output_dir=str(tmp_path), report_to=[], use_cpu=True, max_steps=1,
                              save_strategy="no"))
        trainer.train()
        assert (lint.report is not None) == declared
    assert lint.loss_report is not None and lint.loss_report.ok


def test_a_one_shot_stream_is_left_alone(tmp_path):
    tok = tiny_tokenizer()
    rows = [dict(r) for r in tokenized(tok)]

    class Stream(torch.utils.data.IterableDataset):
        def __init__(self):
            self.rows = iter(rows * 10)

        def __iter__(self):
            return self.rows

    lint, seen = LabelLintCallback(config=False), Seen()
    trainer = build("trainer", tmp_path, tok, data=Stream(), callbacks=[lint, seen])

    trainer.train()

    assert lint.report is None
    assert seen.batches[0][0].tolist()[: len(rows[0]["input_ids"])] == rows[0]["input_ids"]


def test_a_step_that_fails_leaves_no_hook_on_the_model(tmp_path):
    calls = []

    def fails_on_the_second_micro_batch(self, model, inputs, return_outputs=False,
                                        num_items_in_batch=None):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("CUDA out of memory (simulated)")
        return Trainer.compute_loss(self, model, inputs, return_outputs, num_items_in_batch)

    tok = tiny_tokenizer()
    trainer = build("trainer", tmp_path, tok, accumulation=3, callbacks=[LabelLintCallback(
        config=False)], cls=trainer_with("trainer", fails_on_the_second_micro_batch))

    with pytest.raises(RuntimeError, match="simulated"):
        trainer.train()
    trainer.train()  # the retry starts clean

    assert not trainer.model._forward_hooks


def test_without_a_tokenizer_the_models_ids_are_used_and_skips_are_said(tmp_path, caplog):
    tok = tiny_tokenizer()

    def no_mask_collator(rows):  # pads, copies labels, and returns no attention_mask
        batch = label_clone_collator(tok)(rows)
        del batch["attention_mask"]
        return batch

    trainer = build("trainer", tmp_path / "a", tok, collator=no_mask_collator,
                    callbacks=[LabelLintCallback(config=False)])
    trainer.processing_class = trainer.callback_handler.processing_class = None
    with pytest.raises(LabelLintError, match="LL103"):  # pad id 0 from the model's config
        trainer.train()

    lint = LabelLintCallback(config=False)
    trainer = build("trainer", tmp_path / "b", tok, callbacks=[lint])
    trainer.processing_class = trainer.callback_handler.processing_class = None
    trainer.data_collator = no_mask_collator
    trainer.model.config.pad_token_id = trainer.model.config.eos_token_id = None
    with caplog.at_level("WARNING", logger="labellint"):
        trainer.train()
    assert "rules were skipped" in caplog.text and "LL404" in caplog.text
    entry = trainer.state.log_history[0]
    assert entry["labellint/skipped_rules"] >= 1


def test_two_mistakes_at_once_are_named_together(tmp_path):
    def no_shift_per_micro_batch_mean(self, model, inputs, return_outputs=False,
                                      num_items_in_batch=None):
        return no_shift_loss(self, model, inputs, return_outputs)  # ignores num_items_in_batch

    tok = tiny_tokenizer()
    lint = LabelLintCallback(config=False)
    trainer = build("trainer", tmp_path, tok, accumulation=2, callbacks=[lint],
                    cls=trainer_with("trainer", no_shift_per_micro_batch_mean))

    with pytest.raises(LabelLintError, match="two mistakes"):
        trainer.train()

    assert lint.loss_report.matched == "no_shift+sum_of_micro_batch_means"


def test_sftconfig_max_length_is_the_truncation_length_and_cut_answers_are_reported(tmp_path):
    tok = tiny_tokenizer()
    lint = LabelLintCallback(fail_on=None, check_loss=False, config=False)
    trainer = build("sft", tmp_path, tok, callbacks=[lint], max_length=40)
    # TRL cut these rows to 40 tokens before their EOS (some answers run to 30 words).
    cut = sum(len(ids) == 40 and ids[-1] != tok.eos_token_id
              for ids in trainer.train_dataset["input_ids"])
    assert cut >= 2
    trainer.train()

    source = lint.report.sources[0]
    assert source.rows == len(trainer.train_dataset)  # every row was checked
    assert "LL409" not in source.skipped, source.skipped
    assert source.facts.max_length == 40
    found = next(f for f in lint.report.findings if f.code == "LL409")
    assert "max_length=40" in found.message and found.count_rows == cut


def test_the_callbacks_own_max_length_beats_sftconfigs(tmp_path):
    tok = tiny_tokenizer()
    lint = LabelLintCallback(fail_on=None, check_loss=False, config=False, max_length=4096)
    trainer = build("sft", tmp_path, tok, callbacks=[lint], steps=1, max_length=40)
    trainer.train()

    assert lint.report.sources[0].facts.max_length == 4096
    assert "LL409" not in {f.code for f in lint.report.findings}
