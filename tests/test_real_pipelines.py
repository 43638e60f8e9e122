"""Real pipelines: data built the way transformers, TRL and datasets build it, checked end to end.

Every batch here comes out of a real collator, tokenizer, `datasets.Dataset` or DataLoader, so
these tests catch what hand-written batch literals cannot: a rule that fires on what a correct
library produces, or misses what a common mistake produces. Each test asserts the exact set of
codes, and the exact rows where a defect is planted.
"""

import itertools

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
datasets = pytest.importorskip("datasets")

from torch.utils.data import DataLoader  # noqa: E402
from transformers import (  # noqa: E402
    DataCollatorForLanguageModeling,
    DataCollatorForSeq2Seq,
    DataCollatorWithFlattening,
)

import labellint  # noqa: E402
from labellint.testing import CORPUS, tiny_tokenizer  # noqa: E402

datasets.disable_progress_bars()

# Plain texts of different lengths, for language modelling.
TEXTS = [
    "the quick brown fox jumps over the lazy dog",
    "what is the capital of france?",
    "hello there",
    "numbers 0 1 2 3",
]
# (prompt, answer) pairs of different lengths, for supervised fine-tuning.
PAIRS = [
    ("question: how many legs does a spider have? answer:", " a spider has eight legs."),
    ("what is the capital of france?", " the capital of france is paris."),
    ("translate to german: good morning.", " guten morgen."),
    ("user: hello there assistant:", " hi! how can i help you today?"),
    ("write a haiku about the sea.", " waves fold into foam, the tide keeps its slow promise"),
    ("numbers", " 0 1 2 3 4 5 6 7 8 9 10"),
]


def codes(report):
    return {f.code for f in report.findings}


def finding(report, code):
    (f,) = [f for f in report.findings if f.code == code]
    return f


def sft_features(tok, pairs=PAIRS):
    """The standard decoder-only SFT recipe: tokenize prompt + answer + EOS, mask the prompt."""
    features = []
    for prompt, answer in pairs:
        ids = tok(prompt + answer + tok.eos_token)["input_ids"]
        n_prompt = len(tok(prompt)["input_ids"])
        features.append({"input_ids": ids, "attention_mask": [1] * len(ids),
                         "labels": [-100] * n_prompt + ids[n_prompt:]})
    return features


def sft_dataset(tok, pairs=PAIRS):
    """The same recipe as a `datasets.Dataset`: `from_dict`, then `.map(tokenize)`."""
    raw = datasets.Dataset.from_dict({"prompt": [p for p, _ in pairs],
                                      "answer": [a for _, a in pairs]})

    def tokenize(example):
        (feature,) = sft_features(tok, [(example["prompt"], example["answer"])])
        return feature

    return raw.map(tokenize, remove_columns=raw.column_names)


def fully_masked(ds, rows):
    """A copy of `ds` whose labels are all -100 at `rows` (a response template that missed)."""
    def mask(example, i):
        return {"labels": [-100] * len(example["labels"])} if i in rows else {}

    return ds.map(mask, with_indices=True)


# -- DataCollatorForLanguageModeling ------------------------------------------------------------


def test_lm_collator_with_pad_equal_to_eos_masks_every_eos(eos_pad_tok):
    tok = eos_pad_tok
    collator = DataCollatorForLanguageModeling(tok, mlm=False)
    batch = collator([tok(text + tok.eos_token) for text in TEXTS])
    # The collator sets labels to -100 wherever input_ids == pad_token_id, which is also EOS:
    # the appended EOS of every row (the longest, unpadded one too) loses its label.
    assert (batch["labels"][batch["input_ids"] == tok.eos_token_id] == -100).all()

    report = labellint.check(batch, tokenizer=tok)

    # LL403 (the effect) and LL410 (its cause: pad == EOS masked by id). LL404 (missing-eos)
    # rightly stays silent: every row does end with EOS before its padding (the EOS keeps
    # attention_mask 1; only the pad run after it has 0), so the defect is that EOS is never a
    # target, not that it is absent. LL103 stays silent too: the padding carries -100.
    assert codes(report) == {"LL403", "LL410"}, str(report)
    assert finding(report, "LL403").rows == (0, 1, 2, 3)
    assert finding(report, "LL410").rows == (0, 1, 2, 3)


def test_lm_collator_with_a_distinct_pad_token_is_clean(tok):
    collator = DataCollatorForLanguageModeling(tok, mlm=False)
    batch = collator([tok(text + tok.eos_token) for text in TEXTS])
    assert batch["attention_mask"].min() == 0  # the batch really is padded

    report = labellint.check(batch, tokenizer=tok)

    assert codes(report) == set(), str(report)


# -- a hand-written collator, as copied from forum answers --------------------------------------


def forum_collator(tok):
    """Pads with the tokenizer, labels = input_ids (padding left labelled), and "masks the
    question" with attention_mask = 0 instead of labels = -100."""
    def collate(pairs):
        batch = tok([p + a + tok.eos_token for p, a in pairs], padding=True, return_tensors="pt")
        batch["labels"] = batch["input_ids"].clone()
        for i, (prompt, _) in enumerate(pairs):
            batch["attention_mask"][i, : len(tok(prompt)["input_ids"])] = 0
        return batch

    return collate


def test_forum_collator_hides_the_prompt_and_labels_padding(tok):
    batch = forum_collator(tok)(PAIRS[:4])

    report = labellint.check(batch, tokenizer=tok)

    assert codes(report) == {"LL201", "LL103"}, str(report)
    # Every row hides its prompt; rows 1-3 are shorter than row 0 and so carry padding.
    assert finding(report, "LL201").rows == (0, 1, 2, 3)
    assert finding(report, "LL103").rows == (1, 2, 3)


# -- DataCollatorForSeq2Seq on decoder-only SFT features -----------------------------------------


@pytest.mark.parametrize("pad_to_multiple_of", [None, 8])
def test_seq2seq_collator_on_sft_features_is_clean(tok, pad_to_multiple_of):
    collator = DataCollatorForSeq2Seq(tok, padding=True, pad_to_multiple_of=pad_to_multiple_of)
    batch = collator(sft_features(tok))
    assert batch["attention_mask"].min() == 0
    if pad_to_multiple_of:
        assert batch["input_ids"].shape[1] % pad_to_multiple_of == 0

    report = labellint.check(batch, tokenizer=tok)

    assert codes(report) == set(), str(report)


def test_seq2seq_collator_with_left_padding_is_flagged_left_padded(left_tok):
    tok = left_tok
    batch = DataCollatorForSeq2Seq(tok, padding=True)(sft_features(tok))
    lengths = [len(f["input_ids"]) for f in sft_features(tok)]
    padded = tuple(i for i, n in enumerate(lengths) if n < max(lengths))
    assert padded == (0, 1, 2, 3, 5)  # row 4 is the longest

    report = labellint.check(batch, tokenizer=tok)

    # Labels are padded with -100 on the left too, so nothing else is wrong.
    assert codes(report) == {"LL202"}, str(report)
    assert finding(report, "LL202").rows == padded


# -- DataCollatorWithFlattening (padding-free) --------------------------------------------------


def test_flattening_collator_on_sft_features_is_clean(tok):
    features = [{k: f[k] for k in ("input_ids", "labels")} for f in sft_features(tok)]
    batch = DataCollatorWithFlattening()(features)
    assert batch["input_ids"].shape[0] == 1 and "attention_mask" not in batch

    report = labellint.check(batch, tokenizer=tok)

    assert codes(report) == set(), str(report)


# -- full-sequence pretraining: run_clm's group_texts ------------------------------------------


def group_texts_blocks(tok, block_size=16):
    """run_clm: tokenize every text, concatenate, cut into blocks of `block_size`."""
    raw = datasets.Dataset.from_dict({"text": list(dict.fromkeys(CORPUS))})
    tokenized = raw.map(lambda ex: tok(ex["text"]), batched=True, remove_columns=["text"])

    def group_texts(examples):
        joined = {k: list(itertools.chain(*examples[k])) for k in examples}
        total = len(joined["input_ids"]) // block_size * block_size
        return {k: [t[i : i + block_size] for i in range(0, total, block_size)]
                for k, t in joined.items()}

    return tokenized.map(group_texts, batched=True)


def test_group_texts_blocks_are_flagged_packed_where_a_document_starts_inside(tok):
    blocks = group_texts_blocks(tok)
    collator = DataCollatorForLanguageModeling(tok, mlm=False)
    batch = collator([blocks[i] for i in range(len(blocks))])
    # The tokenizer adds BOS to each text: a BOS after a block's first token opens a second
    # document, which attends to the first (no position_ids restart there).
    ids = batch["input_ids"]
    packed = tuple(i for i in range(len(ids)) if (ids[i, 1:] == tok.bos_token_id).any())
    assert 0 < len(packed) < len(ids)

    report = labellint.check(batch, tokenizer=tok)

    # Nothing else: a block starting or ending mid-document is what group_texts makes.
    assert codes(report) == {"LL501"}, str(report)
    assert finding(report, "LL501").count_rows == len(packed)
    assert finding(report, "LL501").rows == packed[:5]


# -- TRL's SFT pipeline ------------------------------------------------------------------------


def sft_trainer(tmp_path, tokenizer, **config):
    """A real SFTTrainer on a prompt/completion dataset, with a tiny Llama built from a config."""
    pytest.importorskip("trl")
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl import SFTConfig, SFTTrainer

    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256))
    data = datasets.Dataset.from_dict({"prompt": [p for p, _ in PAIRS],
                                       "completion": [a for _, a in PAIRS]})
    args = SFTConfig(output_dir=str(tmp_path), report_to="none", use_cpu=True,
                     per_device_train_batch_size=2, **config)
    return SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)


TRL_LAYOUTS = {
    "padded": {},
    "padding-free": {"padding_free": True, "max_length": None},
    "packed-bfd": {"packing": True, "packing_strategy": "bfd", "max_length": 64},
}


@pytest.mark.parametrize("pad_is_eos", [False, True], ids=["pad", "pad-is-eos"])
@pytest.mark.parametrize("layout", list(TRL_LAYOUTS))
@pytest.mark.slow
def test_trl_completion_only_sft_is_clean(tmp_path, layout, pad_is_eos):
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling as TRLCollator

    tok = tiny_tokenizer(pad_is_eos=pad_is_eos)  # a fresh one: the trainer may set its pad token
    trainer = sft_trainer(tmp_path, tok, **TRL_LAYOUTS[layout])
    assert trainer.completion_only_loss
    assert isinstance(trainer.data_collator, TRLCollator)
    assert trainer.data_collator.padding_free == (layout != "padded")
    rows = trainer.train_dataset
    batch = trainer.data_collator([rows[i] for i in range(len(rows))])
    assert (batch["labels"] == -100).any() and (batch["labels"] == tok.eos_token_id).any()

    assert codes(labellint.check(rows, tokenizer=tok)) == set()
    report = labellint.check(batch, tokenizer=tok)
    assert codes(report) == set(), str(report)
    report = labellint.check(trainer.get_train_dataloader(), tokenizer=tok)
    assert codes(report) == set(), str(report)


@pytest.mark.slow
def test_trl_truncation_that_cuts_answers_is_flagged_at_exactly_those_rows(tmp_path):
    tok = tiny_tokenizer()
    trainer = sft_trainer(tmp_path, tok, max_length=20, shuffle_dataset=False)
    rows = trainer.train_dataset  # TRL dropped the first pair: its prompt alone fills 20 tokens
    cut = tuple(i for i, r in enumerate(rows)
                if len(r["input_ids"]) == 20 and r["labels"][-1] != tok.eos_token_id)
    assert cut == (1, 2, 3)

    for max_length in (20, None):  # given, and inferred from the rows piled up at 20
        report = labellint.check(rows, tokenizer=tok, max_length=max_length)
        assert codes(report) == {"LL409"}, str(report)
        assert finding(report, "LL409").rows == cut


# -- datasets.Dataset ----------------------------------------------------------------------------


def test_sft_dataset_from_map_is_clean(tok):
    report = labellint.check(sft_dataset(tok), tokenizer=tok)

    assert codes(report) == set(), str(report)


def test_dataset_rows_with_all_labels_masked_are_flagged_at_exactly_those_rows(tok):
    ds = fully_masked(sft_dataset(tok), rows={1, 4})

    report = labellint.check(ds, tokenizer=tok)

    assert codes(report) == {"LL101"}, str(report)
    assert finding(report, "LL101").rows == (1, 4)
    assert finding(report, "LL101").count_rows == 2


# -- a DataLoader ------------------------------------------------------------------------------


def test_dataloader_batch_with_no_target_is_flagged_with_its_global_rows(tok):
    ds = fully_masked(sft_dataset(tok), rows={2, 3})  # exactly batch 1 of 3
    loader = DataLoader(ds, batch_size=2, shuffle=False,
                        collate_fn=DataCollatorForSeq2Seq(tok, padding=True))

    report = labellint.check(loader, tokenizer=tok)

    # Its two rows are also fully-masked rows: LL101 there is right, and only there.
    assert codes(report) == {"LL101", "LL102"}, str(report)
    assert report.sources[0].batches == 3
    assert finding(report, "LL102").rows == (2, 3)
    assert finding(report, "LL102").count_rows == 2
    assert finding(report, "LL101").rows == (2, 3)


# -- seq2seq labels in a causal setup ---------------------------------------------------------


def seq2seq_style_dataset(tok):
    """`tokenizer(text=prompt, text_target=answer)`: labels are the answer's own token ids."""
    raw = datasets.Dataset.from_dict({"prompt": [p for p, _ in PAIRS],
                                      "answer": [a for _, a in PAIRS]})
    return raw.map(lambda ex: tok(text=ex["prompt"], text_target=ex["answer"]),
                   batched=True, remove_columns=raw.column_names)


def test_seq2seq_labels_in_a_causal_setup_are_a_length_mismatch(tok):
    ds = seq2seq_style_dataset(tok)
    assert all(len(r["labels"]) != len(r["input_ids"]) for r in ds)

    report = labellint.check(ds, tokenizer=tok)

    assert "LL001" in codes(report), str(report)
    assert finding(report, "LL001").rows == (0, 1, 2, 3, 4)
    assert finding(report, "LL001").count_rows == len(PAIRS)


def test_seq2seq_labels_in_a_causal_setup_report_only_the_length_mismatch(tok):
    report = labellint.check(seq2seq_style_dataset(tok), tokenizer=tok)

    assert codes(report) == {"LL001"}, str(report)


# -- pad == EOS on a real Llama 3 Instruct tokenizer --------------------------------------------


def _llama3_pad_is_eot(real_tokenizers):
    """A fresh Llama 3 Instruct tokenizer with pad = EOS = <|eot_id|>, the usual recipe."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(real_tokenizers["llama3-instruct"].path)
    tok.pad_token = tok.eos_token
    return tok


def _chat_features(tok, n, eot_masked=()):
    """Prompt-masked chat rows of different lengths; `eot_masked` rows lose their final label
    (an off-by-one in the answer mask)."""
    feats = []
    for i in range(n):
        msgs = [{"role": "user", "content": f"question {i} " + "word " * (i % 5)},
                {"role": "assistant", "content": f"answer {i} " + "more " * (i % 7)}]
        prompt = tok.apply_chat_template(msgs[:1], add_generation_prompt=True, tokenize=False)
        ids = tok(tok.apply_chat_template(msgs, tokenize=False), add_special_tokens=False)
        ids = ids["input_ids"]
        cut = len(tok(prompt, add_special_tokens=False)["input_ids"])
        labels = [-100] * cut + ids[cut:]
        if i in eot_masked:
            labels[-1] = -100
        feats.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels})
    return feats


def test_a_lost_eos_beside_kept_ones_under_position_masking_is_not_blamed_on_pad_is_eos(
        real_tokenizers):
    tok = _llama3_pad_is_eot(real_tokenizers)
    batch = DataCollatorForSeq2Seq(tok, padding=True)(_chat_features(tok, 16, eot_masked=(3, 9)))
    eot = batch["input_ids"] == tok.eos_token_id
    real_eot = eot & (batch["attention_mask"] == 1)
    # The collator masks padding by position: 14 rows keep their trained <|eot_id|>, padded or not.
    assert (batch["labels"][real_eot] != -100).sum() >= 14
    assert (batch["attention_mask"] == 0).any()

    report = labellint.check(batch, tokenizer=tok)

    assert "LL410" not in codes(report), str(report)
    assert finding(report, "LL603").rows == (3, 9)


def test_the_lm_collator_with_pad_equal_to_eot_is_still_pad_is_eos_on_a_real_tokenizer(
        real_tokenizers):
    tok = _llama3_pad_is_eot(real_tokenizers)
    texts = [tok.apply_chat_template(
        [{"role": "user", "content": f"q {i}"}, {"role": "assistant", "content": "a " * i}],
        tokenize=False) for i in range(1, 9)]
    rows = [tok(t, add_special_tokens=False) for t in texts]
    batch = DataCollatorForLanguageModeling(tok, mlm=False)(rows)

    report = labellint.check(batch, tokenizer=tok)

    assert finding(report, "LL410").count_rows == 8, str(report)
