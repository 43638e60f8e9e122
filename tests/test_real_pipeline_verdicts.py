"""Real pipelines judged right: data that transformers, TRL, a chat template or a published recipe
really make, for the cases where a rule once misjudged it (issue 11, section 3).

Each test builds its rows with the producing code itself (apply_chat_template, TRL's
SFTTrainer and collator, transformers' collators, the llama-recipes alpaca recipe) and asserts
the exact codes and rows, so a rule that fires on correct data or misses the mistake fails here.
"""

import copy
import math

import numpy as np
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
        unk_token="<unk>", chat_template="{{- bos_token }}" + _template(_CHATML, "<|im_end|>", True))


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
