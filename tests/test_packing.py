"""Packing: real packed layouts are clean, naive packing and its half-fixes are flagged, and a
defect planted in one packed row is found at exactly that row (LL304, LL406, LL501-LL503)."""

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import labellint

pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
datasets = pytest.importorskip("datasets")

from test_properties import BOS, EOS, FACTS, IGNORE, examples  # noqa: E402
from test_real_pipelines import PAIRS, codes, finding, sft_features  # noqa: E402
from transformers import (  # noqa: E402
    DataCollatorForLanguageModeling,
    DataCollatorForSeq2Seq,
    DataCollatorWithFlattening,
)

from labellint.testing import CORPUS, tiny_tokenizer  # noqa: E402

datasets.disable_progress_bars()


def flat_features(tok, pairs=PAIRS):
    return [{k: f[k] for k in ("input_ids", "labels")} for f in sft_features(tok, pairs)]


def starts_of(position_ids):
    """Positions (after the first) where a packed sequence starts."""
    pos = np.asarray(position_ids)
    return tuple(int(i) for i in np.flatnonzero(pos == 0) if i > 0)


# -- DataCollatorWithFlattening ------------------------------------------------------------------

FLATTENING = {
    "default": {},
    "flash-kwargs": {"return_flash_attn_kwargs": True},
    "seq-idx": {"return_seq_idx": True},
    "seq-idx-only": {"return_seq_idx": True, "return_position_ids": False},
}


@pytest.mark.parametrize("variant", list(FLATTENING))
def test_flattening_collator_is_clean_in_every_variant(tok, variant):
    batch = DataCollatorWithFlattening(**FLATTENING[variant])(flat_features(tok))
    assert batch["input_ids"].shape[0] == 1 and "attention_mask" not in batch
    # Documents are BOS ... EOS, so the row holds EOS-then-BOS boundaries: what must be
    # isolated by position_ids (or seq_idx) for the row to be clean.
    ids = batch["input_ids"][0]
    assert ((ids[1:] == tok.bos_token_id) & (ids[:-1] == tok.eos_token_id)).sum() == 5

    report = labellint.check(dict(batch), tokenizer=tok)

    assert codes(report) == set(), str(report)


def test_flattening_without_position_ids_is_packed_without_position_ids(tok):
    batch = DataCollatorWithFlattening(return_position_ids=False)(flat_features(tok))

    report = labellint.check(dict(batch), tokenizer=tok)

    assert codes(report) == {"LL501"}, str(report)
    assert finding(report, "LL501").rows == (0,)


def test_flattened_batch_with_an_all_ones_mask_is_flagged(tok):
    batch = dict(DataCollatorWithFlattening()(flat_features(tok)))
    batch["attention_mask"] = np.ones_like(batch["input_ids"])

    report = labellint.check(batch, tokenizer=tok)

    assert codes(report) == {"LL502"}, str(report)


def test_segment_id_attention_mask_isolates_packed_sequences(tok):
    """Axolotl's and LLaMA-Factory's packing: attention_mask holds 1, 1, 2, 2, 3 ..."""
    batch = dict(DataCollatorWithFlattening()(flat_features(tok)))
    pos = batch["position_ids"]
    batch["attention_mask"] = np.cumsum(pos == 0, axis=1)
    assert batch["attention_mask"].max() == len(PAIRS)

    for keep_positions in (True, False):
        b = dict(batch) if keep_positions else {k: v for k, v in batch.items()
                                                if k != "position_ids"}
        report = labellint.check(b, tokenizer=tok)
        assert codes(report) == set(), str(report)


def test_flattening_with_a_labelled_separator_supervises_each_boundary(tok):
    """separator_id set to the pad id instead of -100: every sequence start is a target."""
    batch = DataCollatorWithFlattening(separator_id=tok.pad_token_id)(flat_features(tok))

    report = labellint.check(dict(batch), tokenizer=tok, select=["LL304"])

    assert finding(report, "LL304").positions == (starts_of(batch["position_ids"][0]),)


def test_hand_packing_with_labels_copied_from_input_ids_is_flagged_at_each_start(tok):
    """A custom packer: concatenate documents, restart position_ids, labels = input_ids."""
    rows = []
    for group in (PAIRS[:3], PAIRS[3:]):
        ids, pos = [], []
        for p, a in group:
            doc = tok(p + a + tok.eos_token)["input_ids"]
            ids += doc
            pos += list(range(len(doc)))
        rows.append({"input_ids": ids, "labels": list(ids), "position_ids": pos})

    report = labellint.check(rows, tokenizer=tok)

    assert codes(report) == {"LL304"}, str(report)
    assert finding(report, "LL304").positions == tuple(starts_of(r["position_ids"])
                                                       for r in rows)


# -- TRL ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["bfd", "bfd_split"])
def test_trl_pack_dataset_and_its_padding_free_collator_are_clean(tok, strategy):
    trl = pytest.importorskip("trl")
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling as TRLCollator

    ds = datasets.Dataset.from_list(flat_features(tok) * 3)
    packed = trl.pack_dataset(ds, seq_length=48, strategy=strategy)
    assert "seq_lengths" in packed.column_names and "position_ids" not in packed.column_names
    assert max(len(s) for s in packed["seq_lengths"]) > 1  # rows really hold several

    assert codes(labellint.check(packed, tokenizer=tok)) == set()
    collator = TRLCollator(pad_token_id=tok.pad_token_id, padding_free=True, pad_to_multiple_of=64)
    batch = collator([packed[i] for i in range(len(packed))])
    assert batch["input_ids"].shape[1] % 64 == 0  # padded, with position_ids 0 on the padding
    report = labellint.check(dict(batch), tokenizer=tok)
    assert codes(report) == set(), str(report)


def test_trl_pack_dataset_without_its_seq_lengths_is_packed_without_position_ids(tok):
    trl = pytest.importorskip("trl")
    ds = datasets.Dataset.from_list(flat_features(tok) * 3)
    packed = trl.pack_dataset(ds, seq_length=48, strategy="bfd")
    several = tuple(i for i, s in enumerate(packed["seq_lengths"]) if len(s) > 1)

    report = labellint.check(packed.remove_columns("seq_lengths"), tokenizer=tok)

    assert codes(report) == {"LL501"}, str(report)
    assert finding(report, "LL501").count_rows == len(several)
    assert finding(report, "LL501").rows == several[:5]


def test_trl_wrapped_packing_is_packed_without_position_ids_and_nothing_else(tok):
    trl = pytest.importorskip("trl")
    ds = datasets.Dataset.from_list(flat_features(tok) * 3)
    packed = trl.pack_dataset(ds, seq_length=48, strategy="wrapped")

    report = labellint.check(packed, tokenizer=tok)

    # Blocks cut mid-answer and starting without BOS are wrapped packing's design: the finding
    # is that documents share a row, not LL402/LL409 on each block.
    assert codes(report) == {"LL501"}, str(report)


# -- naive concatenation packing ----------------------------------------------------------------


def concatenated_blocks(tok, block_size):
    """The old ConstantLengthDataset: tokenize, join with EOS, cut fixed blocks, labels = ids."""
    stream = list(itertools.chain.from_iterable(
        tok(p + a)["input_ids"] + [tok.eos_token_id] for p, a in PAIRS * 3))
    return [stream[i : i + block_size] for i in range(0, len(stream) - block_size + 1, block_size)]


def boundary_rows(blocks, tok):
    """Rows where EOS is followed by another token of the block."""
    return tuple(i for i, b in enumerate(blocks)
                 if any(x == tok.eos_token_id for x in b[:-1]))


def test_constant_length_packing_in_a_small_batch_is_flagged_at_its_eos_bos_rows(tok):
    blocks = concatenated_blocks(tok, 32)[:3]
    expected = boundary_rows(blocks, tok)
    assert 0 < len(expected) <= 3
    batch = DataCollatorForLanguageModeling(tok, mlm=False)(blocks)

    report = labellint.check(dict(batch), tokenizer=tok, select=["LL501"])

    assert finding(report, "LL501").rows == expected


def test_group_texts_with_an_eos_separator_and_no_bos_is_flagged(tok):
    """GPT-2 style: no BOS, `text + eos` concatenated and cut into blocks (run_clm)."""
    gpt2_like = tiny_tokenizer(add_bos=False)
    texts = list(dict.fromkeys(CORPUS))
    stream = list(itertools.chain.from_iterable(
        gpt2_like(t + gpt2_like.eos_token)["input_ids"] for t in texts))
    blocks = [stream[i : i + 24] for i in range(0, len(stream) - 23, 24)]
    expected = boundary_rows(blocks, gpt2_like)
    assert 0 < len(expected) < len(blocks)
    batch = DataCollatorForLanguageModeling(gpt2_like, mlm=False)(blocks)

    report = labellint.check(dict(batch), tokenizer=gpt2_like)

    assert codes(report) == {"LL501"}, str(report)
    assert finding(report, "LL501").count_rows == len(expected)


# -- rows that look packed and are not -------------------------------------------------------------

LLAMA2_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'user' %}"
    "{{ bos_token + '[INST] ' + m['content'] + ' [/INST]' }}"
    "{% else %}{% generation %}{{ ' ' + m['content'] + ' ' + eos_token }}{% endgeneration %}"
    "{% endif %}{% endfor %}"
)
CHATML_TEMPLATE = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' }}"
    "{% if m['role'] == 'assistant' %}{% generation %}{{ m['content'] + '<|im_end|>' }}"
    "{% endgeneration %}{% else %}{{ m['content'] + '<|im_end|>' }}{% endif %}{{ '\n' }}"
    "{% endfor %}"
)
CONVERSATIONS = [
    [{"role": "user", "content": p}, {"role": "assistant", "content": a},
     {"role": "user", "content": "thanks"}, {"role": "assistant", "content": "good morning"}]
    for p, a in PAIRS
]


def chat_rows(tok):
    """Multi-turn rows from the real apply_chat_template, assistant turns supervised."""
    rows = []
    for conv in CONVERSATIONS:
        out = tok.apply_chat_template(conv, tokenize=True, return_dict=True,
                                      return_assistant_tokens_mask=True)
        ids = list(out["input_ids"])
        rows.append({"input_ids": ids, "labels": [t if m else IGNORE for t, m in
                                                  zip(ids, out["assistant_masks"])]})
    return rows


def test_llama2_multi_turn_chat_is_not_packing():
    """Llama-2's template writes `</s><s>[INST]` between turns: one conversation, not two."""
    tok = tiny_tokenizer()
    tok.chat_template = LLAMA2_TEMPLATE
    rows = chat_rows(tok)
    assert all(r["input_ids"].count(tok.bos_token_id) == 2 for r in rows)

    report = labellint.check(rows, tokenizer=tok)

    assert codes(report) == set(), str(report)
    # Without the template to say so, BOS after EOS is a second document.
    bare = labellint.check(rows, bos_id=tok.bos_token_id, eos_id=tok.eos_token_id)
    assert codes(bare) == {"LL501"}, str(bare)


def test_chatml_multi_turn_chat_with_im_end_as_eos_is_not_packing():
    """Qwen-Instruct style: EOS is <|im_end|>, which ends every turn inside the row."""
    tok = tiny_tokenizer(add_bos=False)
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tok.eos_token = "<|im_end|>"
    tok.chat_template = CHATML_TEMPLATE
    rows = chat_rows(tok)
    assert all(r["input_ids"].count(tok.eos_token_id) == 4 for r in rows)

    report = labellint.check(rows, tokenizer=tok)

    assert codes(report) == set(), str(report)


# -- LL406 stray-bos ---------------------------------------------------------------------------


def test_text_target_answer_appended_to_the_prompt_carries_a_supervised_bos(tok):
    """`tokenizer(text=prompt, text_target=answer)`, then input = prompt + labels."""
    rows = []
    for p, a in PAIRS:
        enc = tok(text=p, text_target=a + tok.eos_token)
        rows.append({"input_ids": enc["input_ids"] + enc["labels"],
                     "labels": [IGNORE] * len(enc["input_ids"]) + enc["labels"]})
    bos_at = tuple((len(tok(p)["input_ids"]),) for p, _ in PAIRS)

    report = labellint.check(rows, tokenizer=tok)

    assert codes(report) == {"LL406"}, str(report)
    assert finding(report, "LL406").positions == bos_at[:5]


def test_prompt_and_answer_tokenized_separately_leave_a_bos_mid_row(tok):
    rows = [{"input_ids": tok(p)["input_ids"] + tok(a + tok.eos_token)["input_ids"]}
            for p, a in PAIRS]
    for r in rows:
        r["labels"] = list(r["input_ids"])  # position 0's BOS label is never a target

    report = labellint.check(rows, tokenizer=tok)

    assert codes(report) == {"LL406"}, str(report)
    assert finding(report, "LL406").count_tokens == len(PAIRS)


def test_a_doubled_bos_at_the_start_is_duplicate_bos_alone(tok):
    rows = [{"input_ids": tok(tok.bos_token + p + a + tok.eos_token)["input_ids"]}
            for p, a in PAIRS]
    for r in rows:
        r["labels"] = list(r["input_ids"])  # position 1's BOS is a target: still LL401's

    report = labellint.check(rows, tokenizer=tok)

    assert codes(report) == {"LL401"}, str(report)


# -- LL410 pad-is-eos ---------------------------------------------------------------------------


def test_seq2seq_collator_with_pad_equal_to_eos_keeps_eos_and_is_clean(eos_pad_tok):
    tok = eos_pad_tok
    batch = DataCollatorForSeq2Seq(tok, padding=True)(sft_features(tok))
    assert (batch["input_ids"] == tok.pad_token_id).sum() > len(PAIRS)  # padded with EOS

    report = labellint.check(dict(batch), tokenizer=tok)

    assert codes(report) == set(), str(report)


def test_lm_collator_with_pad_equal_to_eos_on_packed_blocks_masks_the_inner_eos(eos_pad_tok):
    tok = eos_pad_tok
    blocks = concatenated_blocks(tok, 32)
    batch = DataCollatorForLanguageModeling(tok, mlm=False)(blocks)

    report = labellint.check(dict(batch), tokenizer=tok, select=["LL410"])

    assert finding(report, "LL410").count_rows == len(boundary_rows(blocks, tok))


# -- LL503 invalid-position-ids -----------------------------------------------------------------


def test_position_ids_counted_across_the_stream_are_invalid(tok):
    """position_ids made before group_texts cut the stream: rows 1+ start past their length."""
    blocks = concatenated_blocks(tok, 16)[:4]
    rows = [{"input_ids": b, "labels": list(b),
             "position_ids": list(range(16 * i, 16 * (i + 1)))} for i, b in enumerate(blocks)]

    report = labellint.check(rows, tokenizer=tok, select=["LL503"])

    assert finding(report, "LL503").rows == (1, 2, 3)
    assert finding(report, "LL503").positions == ((0,), (0,), (0,))


def test_position_ids_of_another_length_are_length_mismatch_alone(tok):
    features = flat_features(tok)
    rows = [{**f, "position_ids": list(range(len(f["input_ids"]) + (i == 2)))}
            for i, f in enumerate(features)]

    report = labellint.check(rows, tokenizer=tok)

    assert codes(report) == {"LL001"}, str(report)
    assert finding(report, "LL001").rows == (2,)


# -- properties ---------------------------------------------------------------------------------


def flattened_rows(rows, per_row):
    """Real DataCollatorWithFlattening output, `per_row` documents to a packed row."""
    collator = DataCollatorWithFlattening(return_tensors="np")
    out = []
    for i in range(0, len(rows), per_row):
        feats = [{"input_ids": r["input_ids"], "labels": r["labels"]}
                 for r in rows[i : i + per_row]]
        b = collator(feats)
        out.append({k: b[k][0].tolist() for k in ("input_ids", "labels", "position_ids")})
    return out


@given(examples(min_rows=2, max_rows=12), st.integers(2, 4))
def test_flattened_packed_rows_are_clean(rows, per_row):
    packed = flattened_rows(rows, per_row)
    report = labellint.check(packed, **FACTS)
    assert report.findings == [], str(report)


def _label_a_start(r):
    start = starts_of(r["position_ids"])[0]
    r["labels"][start] = r["input_ids"][start]


def _skip_a_position(r):
    r["position_ids"][-1] += 1


def _drop_position_restarts(r):
    r["position_ids"] = list(range(len(r["input_ids"])))


def _stray_bos(r):
    end = len(r["input_ids"]) - 1  # before the last document's EOS, in its answer
    r["input_ids"].insert(end, BOS)
    r["labels"].insert(end, BOS)
    r["position_ids"].append(r["position_ids"][-1] + 1)


PACKING_PLANTERS = {"LL304": _label_a_start, "LL503": _skip_a_position,
                    "LL501": _drop_position_restarts, "LL406": _stray_bos}


@given(examples(min_rows=4, max_rows=12), st.sampled_from(sorted(PACKING_PLANTERS)),
       st.data())
def test_defect_planted_in_one_packed_row_is_found_at_exactly_that_row(rows, code, data):
    packed = flattened_rows(rows, 2)
    target = data.draw(st.sampled_from([i for i, r in enumerate(packed)
                                        if starts_of(r["position_ids"])]))
    PACKING_PLANTERS[code](packed[target])
    report = labellint.check(packed, **FACTS)
    assert codes(report) == {code}, str(report)
    assert finding(report, code).rows == (target,)
    assert EOS in packed[target]["input_ids"]


def test_trl_packed_dataset_trained_whole_is_judged_as_its_collator_leaves_it(tok):
    """pack_dataset keeps labels = input_ids and `seq_lengths`; TRL's collator then masks each
    sequence's first label. The stored dataset must not be flagged for what that collator fixes."""
    trl = pytest.importorskip("trl")
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling as TRLCollator

    texts = ["the quick brown fox jumps over the lazy dog", "what is the capital of france?",
             "hello there", "numbers 0 1 2 3"]
    rows = [{"input_ids": (ids := tok(t + tok.eos_token)["input_ids"]), "labels": list(ids)}
            for t in texts]
    packed = trl.pack_dataset(datasets.Dataset.from_list(rows), seq_length=48, strategy="bfd")
    assert max(len(s) for s in packed["seq_lengths"]) > 1
    batch = TRLCollator(pad_token_id=tok.pad_token_id, padding_free=True)(list(packed))
    assert codes(labellint.check(dict(batch), tokenizer=tok)) == set()
    assert codes(labellint.check(packed, tokenizer=tok)) == set()
