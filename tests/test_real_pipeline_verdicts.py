"""Real pipelines judged right: data that transformers, TRL, a chat template or a published recipe
really make, for the cases where a rule once misjudged it (issue 11, section 3).

Each test builds its rows with the producing code itself (apply_chat_template, TRL's
SFTTrainer and collator, transformers' collators, the llama-recipes alpaca recipe) and asserts
the exact codes and rows, so a rule that fires on correct data or misses the mistake fails here.
"""

import copy
import math

import pytest

pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
datasets = pytest.importorskip("datasets")

import torch  # noqa: E402
from test_chat import CONVERSATIONS, masked_rows, rows_of  # noqa: E402
from test_real_pipelines import PAIRS, codes, finding, sft_features  # noqa: E402
from transformers import DataCollatorForSeq2Seq, PreTrainedTokenizerFast  # noqa: E402

import labellint  # noqa: E402
from labellint.testing import _CHATML, _template, _with_tokens  # noqa: E402

datasets.disable_progress_bars()


# -- BOS == EOS (LL501) ------------------------------------------------------------------------


def bos_is_eos_tokenizer():
    """GPT-2's one `<|endoftext|>` as BOS, EOS and pad (as Qwen's GGUF vocabulary has it), with
    a ChatML template that opens every conversation with `{{ bos_token }}`."""
    return PreTrainedTokenizerFast(
        tokenizer_object=_with_tokens(["<|im_start|>", "<|im_end|>", "<|endoftext|>"]),
        bos_token="<|endoftext|>", eos_token="<|endoftext|>", pad_token="<|endoftext|>",
        unk_token="<unk>",
        chat_template="{{- bos_token }}" + _template(_CHATML, "<|im_end|>", True))


def test_chat_rows_opened_by_a_bos_that_is_also_eos_are_not_packed():
    tok = bos_is_eos_tokenizer()
    rows = masked_rows(tok)
    assert tok.bos_token_id == tok.eos_token_id
    assert all(r["input_ids"][0] == tok.eos_token_id for r in rows)

    report = labellint.check(rows, tokenizer=tok)

    assert codes(report) == set(), str(report)


def test_padded_chat_batch_with_bos_pad_and_eos_one_id_is_clean():
    tok = bos_is_eos_tokenizer()
    batch = DataCollatorForSeq2Seq(tok, padding=True)(masked_rows(tok))
    assert (batch["attention_mask"] == 0).any()

    report = labellint.check(batch, tokenizer=tok)

    assert codes(report) == set(), str(report)


def test_chat_documents_concatenated_with_bos_equal_to_eos_are_still_packed():
    """Two rendered conversations joined into one row (naive packing): the second one's leading
    `<|endoftext|>` follows the first one's end inside the row, with nothing isolating them."""
    tok = bos_is_eos_tokenizer()
    rows = masked_rows(tok)
    joined = [{k: rows[i][k] + rows[i + 1][k] for k in rows[i]} for i in (0, 2)]
    batch = DataCollatorForSeq2Seq(tok, padding=True)(joined + [rows[1]])

    report = labellint.check(batch, tokenizer=tok)

    assert codes(report) == {"LL501"}, str(report)
    assert finding(report, "LL501").rows == (0, 1)


# -- truncation inferred from the data (LL409) -------------------------------------------------


def alpaca_max_words(tok, max_words, pairs=PAIRS):
    """llama-recipes' alpaca InstructionDataset (the `max_words` version): encode prompt and
    prompt + answer + EOS, pad with -1 up to max_words or cut at it, label by hand, mask by
    `ge(0)`."""
    out = []
    for prompt_text, answer in pairs:
        prompt = torch.tensor(tok.encode(prompt_text), dtype=torch.int64)
        example = tok.encode(prompt_text + answer)
        example.append(tok.eos_token_id)
        example = torch.tensor(example, dtype=torch.int64)
        padding = max_words - example.shape[0]
        if padding > 0:
            example = torch.cat((example, torch.zeros(padding, dtype=torch.int64) - 1))
        elif padding < 0:
            example = example[:max_words]
        labels = copy.deepcopy(example)
        labels[: len(prompt)] = -1
        example_mask = example.ge(0)
        label_mask = labels.ge(0)
        example[~example_mask] = 0
        labels[~label_mask] = -100
        out.append({"input_ids": example, "labels": labels,
                    "attention_mask": example_mask.float()})
    return out


def test_llama_recipes_max_words_cut_is_inferred_and_reported(tok):
    lengths = [len(tok.encode(p + a)) + 1 for p, a in PAIRS]
    max_words = 30
    cut = tuple(i for i, n in enumerate(lengths) if n > max_words)
    assert len(cut) == 2  # too few to pile up above the lengths below: the endings tell

    rows = alpaca_max_words(tok, max_words)
    report = labellint.check(rows, tokenizer=tok)

    assert codes(report) == {"LL409"}, str(report)
    assert finding(report, "LL409").rows == cut
    facts = report.sources[0].facts
    assert facts.max_length == max_words
    assert facts.origin["max_length"] == "inferred from data"
    assert f"max_length {max_words} (inferred from data)" in str(report)


@pytest.mark.slow
def test_trl_max_length_cutting_two_answers_is_inferred_and_reported(tmp_path):
    from test_real_pipelines import sft_trainer

    from labellint.testing import tiny_tokenizer

    tok = tiny_tokenizer()
    trainer = sft_trainer(tmp_path, tok, max_length=30, shuffle_dataset=False)
    rows = trainer.train_dataset
    cut = tuple(i for i, r in enumerate(rows)
                if len(r["input_ids"]) == 30 and r["input_ids"][-1] != tok.eos_token_id)
    assert len(cut) == 2
    batch = trainer.data_collator([rows[i] for i in range(len(rows))])

    for data in (rows, batch):
        report = labellint.check(data, tokenizer=tok)
        assert codes(report) == {"LL409"}, str(report)
        assert finding(report, "LL409").rows == cut
        assert report.sources[0].facts.origin["max_length"] == "inferred from data"


def test_a_padded_batch_whose_longest_rows_tie_is_not_truncation(tok):
    """The collator pads to the longest row; two rows tying for longest, ending with EOS."""
    pairs = PAIRS[:4] + [PAIRS[0]]
    batch = DataCollatorForSeq2Seq(tok, padding=True)(sft_features(tok, pairs))

    report = labellint.check(batch, tokenizer=tok)

    assert codes(report) == set(), str(report)
    assert report.sources[0].facts.max_length is None


def test_clean_max_words_rows_where_nothing_is_cut_infer_no_max_length(tok):
    rows = alpaca_max_words(tok, 40)

    report = labellint.check(rows, tokenizer=tok)

    assert codes(report) == set(), str(report)
    assert report.sources[0].facts.max_length is None


def test_two_longest_rows_missing_eos_among_rows_without_eos_are_missing_eos(tok):
    """No row ends with EOS: nothing singles out the longest, so it is missing-eos, not a cut."""
    features = sft_features(tok, PAIRS + [PAIRS[4]])
    for f in features:
        for k in f:
            f[k] = f[k][:-1]

    report = labellint.check(features, tokenizer=tok)

    assert codes(report) == {"LL404"}, str(report)
    assert report.sources[0].facts.max_length is None


# -- a trained assistant header in every row (LL602) -------------------------------------------


def completion_masked_without_generation_prompt(tok, convs=CONVERSATIONS):
    """The mask TRL once computed: the prompt rendered by apply_chat_template(messages[:-1])
    without add_generation_prompt, and that many tokens masked, so the last assistant turn's
    header is trained with its answer."""
    rows = []
    for conv in convs:
        prompt = tok.apply_chat_template(conv[:-1], add_generation_prompt=False,
                                         return_dict=True)["input_ids"]
        full = tok.apply_chat_template(conv, return_dict=True)["input_ids"]
        assert full[: len(prompt)] == prompt
        n = len(prompt)
        rows.append({"input_ids": full, "attention_mask": [1] * len(full),
                     "labels": [-100] * n + full[n:]})
    return rows


@pytest.mark.parametrize("family", ["chatml", "llama3"])
def test_an_assistant_header_trained_in_every_row_is_supervised_role_header(family):
    from test_chat import FAMILIES

    from labellint.chat_format import chat_format

    tok = FAMILIES[family]()
    rows = completion_masked_without_generation_prompt(tok)
    batch = DataCollatorForSeq2Seq(tok, padding=True)(rows)

    report = labellint.check(batch, tokenizer=tok)

    assert codes(report) == {"LL602"}, str(report)
    assert rows_of(report, "LL602") == set(range(len(CONVERSATIONS)))
    core = len(chat_format(tok).core("assistant"))
    assert all(len(p) == core for p in finding(report, "LL602").positions)  # the last header
    assert report.sources[0].facts.assistant_only_loss is True


@pytest.mark.parametrize("family", ["chatml", "llama3"])
def test_the_same_rows_with_the_generation_prompt_in_the_prompt_are_clean(family):
    from test_chat import FAMILIES

    tok = FAMILIES[family]()
    rows = []
    for conv in CONVERSATIONS:
        prompt = tok.apply_chat_template(conv[:-1], add_generation_prompt=True,
                                         return_dict=True)["input_ids"]
        full = tok.apply_chat_template(conv, return_dict=True)["input_ids"]
        rows.append({"input_ids": full, "labels": [-100] * len(prompt) + full[len(prompt):]})

    assert codes(labellint.check(rows, tokenizer=tok)) == set()


@pytest.mark.parametrize("family", ["chatml", "llama3"])
def test_whole_conversations_trained_in_every_row_stay_a_choice(family):
    """Every header trained, prompts too: full-sequence training, not a header slip."""
    from test_chat import FAMILIES

    tok = FAMILIES[family]()
    rows = completion_masked_without_generation_prompt(tok)
    for r in rows:
        r["labels"] = list(r["input_ids"])

    report = labellint.check(rows, tokenizer=tok)

    assert codes(report) == set(), str(report)
    assert report.sources[0].facts.assistant_only_loss is False


# -- negative position_ids (LL503) -------------------------------------------------------------


def left_padded_with_positions(tok, *, masked_fill: bool):
    """A left-padded batch with position_ids from the attention mask, as generation code
    makes them; `generate` then fills the padding's -1 with 1."""
    from test_real_pipelines import TEXTS

    batch = tok([t + tok.eos_token for t in TEXTS], padding=True, return_tensors="pt")
    position_ids = batch["attention_mask"].long().cumsum(-1) - 1
    if masked_fill:
        position_ids.masked_fill_(batch["attention_mask"] == 0, 1)
    return dict(batch, position_ids=position_ids)


def test_cumsum_position_ids_on_left_padding_are_invalid_where_negative(left_tok):
    batch = left_padded_with_positions(left_tok, masked_fill=False)
    negative = tuple(i for i in range(len(batch["input_ids"]))
                     if (batch["position_ids"][i] < 0).any())
    assert negative == (1, 2, 3)  # row 0 is the longest: no padding

    report = labellint.check(batch, tokenizer=left_tok)

    assert codes(report) == {"LL503"}, str(report)
    f = finding(report, "LL503")
    assert f.rows == negative
    assert f.count_tokens == int((batch["position_ids"] < 0).sum())


def test_cumsum_position_ids_with_the_masked_fill_are_clean(left_tok):
    batch = left_padded_with_positions(left_tok, masked_fill=True)

    report = labellint.check(batch, tokenizer=left_tok)

    assert codes(report) == set(), str(report)


# -- shift_labels for sequence-parallel training (LL302) ---------------------------------------


def with_shift_labels(batch, *, shifted: bool = True):
    """The shift_labels that transformers' Trainer adds for context parallelism (and
    accelerate's Ulysses adapter for DeepSpeed SP): labels padded with -100, then [:, 1:].
    `shifted=False` is the slip: a copy of labels."""
    labels = batch["labels"]
    shift = torch.nn.functional.pad(labels, (0, 1), value=-100)[:, 1:].contiguous() \
        if shifted else labels.clone()
    return dict(batch, shift_labels=shift)


def test_shift_labels_are_what_the_models_loss_reads(tok):
    from labellint.testing import tiny_llama

    batch = DataCollatorForSeq2Seq(tok, padding=True)(sft_features(tok))
    sp = with_shift_labels(batch)
    model = tiny_llama(vocab_size=len(tok))
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    with torch.no_grad():
        from_labels = model(**inputs, labels=batch["labels"]).loss
        # labels all ignored: the loss comes from shift_labels alone, as they are
        from_shift = model(**inputs, labels=torch.full_like(batch["labels"], -100),
                           shift_labels=sp["shift_labels"]).loss
    assert torch.allclose(from_labels, from_shift)


def test_correct_shift_labels_are_clean(tok):
    batch = with_shift_labels(DataCollatorForSeq2Seq(tok, padding=True)(sft_features(tok)))

    report = labellint.check(batch, tokenizer=tok)

    assert codes(report) == set(), str(report)
    facts = report.sources[0].facts
    assert facts.label_shift == "dataset"
    assert facts.origin["label_shift"] == "shift_labels column"


def test_shift_labels_copied_from_labels_without_shifting_are_unshifted(tok):
    batch = with_shift_labels(DataCollatorForSeq2Seq(tok, padding=True)(sft_features(tok)),
                              shifted=False)

    report = labellint.check(batch, tokenizer=tok)

    assert codes(report) == {"LL302"}, str(report)
    assert finding(report, "LL302").count_rows == len(PAIRS)


def test_a_shift_labels_column_of_another_name_is_mapped_by_columns(tok):
    collated = DataCollatorForSeq2Seq(tok, padding=True)(sft_features(tok))
    rows = []
    for shifted in (True, False):
        b = with_shift_labels(collated, shifted=shifted)
        rows.append(datasets.Dataset.from_dict(
            {"input_ids": b["input_ids"].tolist(), "attention_mask": b["attention_mask"].tolist(),
             "labels": b["labels"].tolist(), "sp_labels": b["shift_labels"].tolist()}))

    good, bad = (labellint.check(ds, tokenizer=tok, columns={"shift_labels": "sp_labels"})
                 for ds in rows)

    assert codes(good) == set(), str(good)
    assert codes(bad) == {"LL302"}, str(bad)
    # unmapped, the column is not read: labels alone, in the model's convention, are clean
    assert codes(labellint.check(rows[1], tokenizer=tok)) == set()


# -- the loss: a mean over every padded position (LL901), a head initialised too large (LL904) -


def masked_mean_over_every_position(model, inputs):
    """A loss as users write it: per-token cross-entropy, zeroed by a mask, then `.mean()`,
    which divides by every position of the padded batch."""
    labels = inputs["labels"]
    logits = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
    ce = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.size(-1)), labels[:, 1:].reshape(-1),
        reduction="none").view(labels.size(0), -1)
    mask = (labels[:, 1:] != -100).float()
    return (ce * mask).mean()


def attention_masked_mean(model, inputs):
    """The same with labels = input_ids and the attention mask as the mask."""
    ids, attention = inputs["input_ids"], inputs["attention_mask"]
    logits = model(input_ids=ids, attention_mask=attention).logits
    ce = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.size(-1)), ids[:, 1:].reshape(-1),
        reduction="none").view(ids.size(0), -1)
    return (ce * attention[:, 1:]).mean()


@pytest.mark.parametrize("loss_fn, matched", [
    (masked_mean_over_every_position, "all_positions"),
    (attention_masked_mean, "attended_over_all_positions"),
])
def test_a_mean_over_every_padded_position_is_a_loss_mismatch(tok, loss_fn, matched):
    from labellint.testing import tiny_llama

    batch = DataCollatorForSeq2Seq(tok, padding=True)(sft_features(tok))
    assert (batch["attention_mask"] == 0).any()
    model = tiny_llama(vocab_size=len(tok))

    report = labellint.check_loss(model, batch, loss_fn=loss_fn)

    assert [f.code for f in report.findings] == ["LL901"], str(report)
    assert report.matched == matched
    message = report.findings[0].message
    assert "every position" in message and "padding" in message and ".mean()" in message
    assert report.reported_loss == pytest.approx(report.hypotheses[matched], rel=1e-4)


def head_fifty_times_too_large(vocab_size):
    from labellint.testing import tiny_llama

    model = tiny_llama(vocab_size=vocab_size, hidden_size=64, initializer_range=0.02)
    with torch.no_grad():
        model.lm_head.weight.mul_(50)
    return model


def test_a_head_initialised_fifty_times_too_large_is_loss_at_init(tok):
    batch = DataCollatorForSeq2Seq(tok, padding=True)(sft_features(tok))
    model = head_fifty_times_too_large(len(tok))

    for at_init in (True, None):  # said, and not said: no model belongs that far above ln V
        report = labellint.check_loss(model, batch, at_init=at_init)
        assert [f.code for f in report.findings] == ["LL904"], str(report)
        assert report.reference_loss > 2 * math.log(len(tok))
        assert "above ln(400)" in report.findings[0].message
    assert not labellint.check_loss(model, batch, at_init=False).findings


def test_a_fresh_model_with_the_configs_init_is_not_loss_at_init(tok):
    from labellint.testing import tiny_llama

    batch = DataCollatorForSeq2Seq(tok, padding=True)(sft_features(tok))
    model = tiny_llama(vocab_size=len(tok), hidden_size=64, initializer_range=0.02)

    for at_init in (True, None):
        assert not labellint.check_loss(model, batch, at_init=at_init).findings


def trainer(tmp_path, tok, model, **attrs):
    from transformers import Trainer, TrainingArguments

    from labellint.integrations.transformers import LabelLintCallback

    cls = type("CustomTrainer", (Trainer,), attrs) if attrs else Trainer
    lint = LabelLintCallback(config=False)
    args = TrainingArguments(output_dir=str(tmp_path / "out"), report_to=[], use_cpu=True,
                             per_device_train_batch_size=3, max_steps=1, logging_steps=50,
                             save_strategy="no", seed=0)
    data = datasets.Dataset.from_list(sft_features(tok))
    return cls(model=model, args=args, processing_class=tok, train_dataset=data,
               data_collator=DataCollatorForSeq2Seq(tok), callbacks=[lint]), lint


def test_the_callback_stops_on_a_mean_over_every_padded_position(tmp_path, tok):
    from labellint import LabelLintError
    from labellint.testing import tiny_llama

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        return masked_mean_over_every_position(model, inputs)

    run, lint = trainer(tmp_path, tok, tiny_llama(vocab_size=len(tok)),
                        compute_loss=compute_loss)

    with pytest.raises(LabelLintError, match="LL901"):
        run.train()
    assert lint.loss_report.matched == "all_positions"


def test_the_callback_warns_of_a_head_initialised_fifty_times_too_large(tmp_path, tok):
    run, lint = trainer(tmp_path, tok, head_fifty_times_too_large(len(tok)))

    run.train()  # a warning: logged, training goes on

    assert [f.code for f in lint.loss_report.findings] == ["LL904"], \
        lint.loss_report.render().plain


# -- TRL max_length cutting a conversation before its answer (LL409) ---------------------------


def _cut_conversations(n=20):
    """One user question of growing length and one fixed answer: at max_length some rows keep
    part of the answer, some end inside the assistant header, some in the user's turn."""
    return [[{"role": "user", "content": "tell me " + "more " * i},
             {"role": "assistant", "content": "sure " * 4 + "done."}] for i in range(n)]


def _trl_conversational(tmp_path, tok, convs, max_length):
    """TRL SFTTrainer's own tokenization of conversational data (whole conversation trained)
    and its collator's batch; the pad token TRL sets (EOS where there is none) is undone."""
    from test_matrix import _state, _tiny_model
    from trl import SFTConfig, SFTTrainer

    with _state(tok, pad_token=tok.pad_token):
        trainer = SFTTrainer(
            model=_tiny_model(tok), processing_class=tok,
            train_dataset=datasets.Dataset.from_dict({"messages": convs}),
            args=SFTConfig(output_dir=str(tmp_path), report_to=[], use_cpu=True, bf16=False,
                           per_device_train_batch_size=2, max_length=max_length,
                           shuffle_dataset=False))
        rows = [trainer.train_dataset[i] for i in range(len(trainer.train_dataset))]
        return rows, trainer.data_collator(rows)


def _answer_cut_rows(tok, convs, max_length):
    """The rows whose answer does not fit, from the untruncated render: the assistant's
    end-of-turn token lies at or past max_length. Also those where not one token of it fits."""
    eot = tok.convert_tokens_to_ids("<|eot_id|>" if "<|eot_id|>" in tok.get_vocab()
                                    else "<|im_end|>")
    cut, gone = [], []
    for i, messages in enumerate(convs):
        full = tok.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
        prompt = tok.apply_chat_template(messages[:1], tokenize=True, return_dict=True,
                                         add_generation_prompt=True)["input_ids"]
        assert full[:len(prompt)] == prompt
        end = len(prompt) + full[len(prompt):].index(eot)
        if end >= max_length:
            cut.append(i)
        if len(prompt) >= max_length:
            gone.append(i)
    return tuple(cut), tuple(gone)


@pytest.mark.parametrize("name", ["llama3-instruct", "qwen2.5-instruct"])
def test_trl_max_length_cutting_a_conversation_before_its_answer_is_truncated_target(
        real_tokenizers, tmp_path, name):
    tok = real_tokenizers[name].tokenizer
    convs, max_length = _cut_conversations(), 48
    cut, gone = _answer_cut_rows(tok, convs, max_length)
    kept = set(range(len(convs))) - set(cut)
    assert gone and set(cut) - set(gone) and kept  # answers lost whole, cut inside, and kept
    rows, batch = _trl_conversational(tmp_path / "cut", tok, convs, max_length)
    assert max(len(r["input_ids"]) for r in rows) == max_length

    for data in (rows, batch):
        for given in (max_length, None):
            report = labellint.check(data, tokenizer=tok, max_length=given,
                                     max_examples=len(convs))
            assert codes(report) == {"LL409"}, (given, str(report))
            assert finding(report, "LL409").rows == cut, (given, str(report))
            assert report.sources[0].facts.max_length == max_length

    rows, batch = _trl_conversational(tmp_path / "whole", tok, convs, None)
    for data in (rows, batch):
        report = labellint.check(data, tokenizer=tok)
        assert codes(report) == set(), str(report)
        assert report.sources[0].facts.max_length is None
