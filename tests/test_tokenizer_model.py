"""LL408 tokenizer-model-mismatch: a tokenizer grown without resizing the model, and config
special ids that disagree with the tokenizer's, on real tokenizers and tiny Llama models."""

import pytest

import labellint
from labellint.hf_facts import model_facts, tokenizer_facts

pytest.importorskip("torch")
pytest.importorskip("transformers")

from test_real_pipelines import PAIRS, codes, finding, sft_features  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402

from labellint.testing import tiny_tokenizer  # noqa: E402


def tiny_llama(tok, vocab_size=None, **config):
    """A one-layer Llama built from a config (random init, fixed seed), ids from `tok`."""
    import torch

    torch.manual_seed(0)
    ids = dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
               pad_token_id=tok.pad_token_id) | config
    return LlamaForCausalLM(LlamaConfig(
        vocab_size=vocab_size or len(tok), hidden_size=16, intermediate_size=32,
        num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2, **ids))


@pytest.fixture
def grown():
    """The tiny tokenizer after `add_special_tokens`, and a model made for it before that."""
    tok = tiny_tokenizer()
    model = tiny_llama(tok)
    added = tok.add_special_tokens({"additional_special_tokens": ["<tool_call>", "</tool_call>"]})
    assert added == 2
    return tok, model


def test_tokens_added_without_resizing_the_model_are_flagged(grown):
    tok, model = grown
    rows = model.get_input_embeddings().weight.shape[0]

    report = labellint.check(sft_features(tok), tokenizer=tok, model=model)

    assert codes(report) == {"LL408"}, str(report)
    message = finding(report, "LL408").message
    assert f"{len(tok):,} tokens" in message and f"{rows:,} rows" in message


def test_resized_model_is_clean(grown):
    tok, model = grown
    model.resize_token_embeddings(len(tok), mean_resizing=False)

    assert codes(labellint.check(sft_features(tok), tokenizer=tok, model=model)) == set()


def test_embedding_padded_past_the_tokenizer_is_clean(grown):
    tok, model = grown
    model.resize_token_embeddings(len(tok), pad_to_multiple_of=64, mean_resizing=False)
    assert model.get_input_embeddings().weight.shape[0] > len(tok)

    assert codes(labellint.check(sft_features(tok), tokenizer=tok, model=model)) == set()


def test_data_using_an_added_token_is_also_out_of_vocab(grown):
    tok, model = grown
    tool = tok.convert_tokens_to_ids("<tool_call>")
    rows = sft_features(tok)
    rows[3]["input_ids"][2] = tool

    report = labellint.check(rows, tokenizer=tok, model=model)

    assert codes(report) == {"LL408", "LL405"}, str(report)
    assert finding(report, "LL405").rows == (3,)


def test_pad_token_added_without_resize_is_reported_not_a_crash():
    """The classic: `add_special_tokens({'pad_token': '[PAD]'})`, no resize; the pad id is
    past the model's table, which must be a finding, not an error about the facts."""
    tok = tiny_tokenizer()
    model = tiny_llama(tok, pad_token_id=None)
    tok.add_special_tokens({"pad_token": "[PAD]"})
    batch = tok([p + a + tok.eos_token for p, a in PAIRS], padding=True)
    batch["labels"] = [[t if m else -100 for t, m in zip(ids, mask)]
                       for ids, mask in zip(batch["input_ids"], batch["attention_mask"])]

    report = labellint.check(dict(batch), tokenizer=tok, model=model)

    assert codes(report) == {"LL408", "LL405"}, str(report)
    padded = tuple(i for i, ids in enumerate(batch["input_ids"]) if tok.pad_token_id in ids)
    assert 0 < len(padded) < len(PAIRS)
    assert finding(report, "LL405").rows == padded


def test_eos_listed_among_several_in_the_config_is_clean():
    tok = tiny_tokenizer()
    model = tiny_llama(tok, eos_token_id=[tok.eos_token_id, 7])

    assert codes(labellint.check(sft_features(tok), tokenizer=tok, model=model)) == set()


@pytest.mark.parametrize("field", ["bos_token_id", "eos_token_id", "pad_token_id"])
def test_config_special_id_that_disagrees_with_the_tokenizer_is_flagged(field):
    tok = tiny_tokenizer()
    model = tiny_llama(tok, **{field: 7})

    report = labellint.check(sft_features(tok), tokenizer=tok, model=model)

    assert codes(report) == {"LL408"}, str(report)
    assert f"{field} is 7" in finding(report, "LL408").message


def test_config_without_a_pad_id_is_clean():
    tok = tiny_tokenizer()
    model = tiny_llama(tok, pad_token_id=None)

    assert codes(labellint.check(sft_features(tok), tokenizer=tok, model=model)) == set()


def test_model_folder_and_config_object_give_the_same_finding(grown, tmp_path):
    tok, model = grown
    model.config.save_pretrained(tmp_path)
    for given in (tmp_path, model.config):
        report = labellint.check(sft_features(tok), tokenizer=tok, model=given)
        assert codes(report) == {"LL408"}, str(report)


def test_without_a_model_the_rule_is_skipped(grown):
    tok, _ = grown
    report = labellint.check(sft_features(tok), tokenizer=tok)
    assert "LL408" in report.sources[0].skipped


def test_facts_read_from_tokenizer_and_model(grown):
    tok, model = grown
    t, m = tokenizer_facts(tok), model_facts(model)
    assert t["tokenizer_size"] == len(tok) == m["model_vocab_size"] + 2
    assert (m["model_bos_id"], m["model_eos_ids"], m["model_pad_id"]) == (
        tok.bos_token_id, (tok.eos_token_id,), tok.pad_token_id)
    assert t["bos_every_turn"] is None  # no chat template
