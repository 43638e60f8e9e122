"""Facts: given beats tokenizer beats data; inference names a token only on clear evidence."""

import labellint

IM_START, IM_END, NL, USER, ASSISTANT = 10, 11, 12, 13, 14


def facts_of(report):
    (facts,) = report.facts.values()
    return facts


def chatml_row(*content):
    """<|im_start|>user ... <|im_end|>\\n<|im_start|>assistant ... <|im_end|>\\n"""
    user, answer = content
    return ([IM_START, USER, *user, IM_END, NL, IM_START, ASSISTANT, *answer, IM_END, NL])


def test_chatml_turn_markers_are_not_inferred_as_bos_or_eos():
    rows = [chatml_row([20 + i, 21], [30, 31 + i]) for i in range(8)]
    facts = facts_of(labellint.check({"input_ids": rows}))
    assert facts.bos_id is None and facts.eos_id is None


def test_bos_and_eos_are_inferred_from_row_edges():
    rows = [[1, 20 + i, 21, 22, 2] for i in range(8)]
    facts = facts_of(labellint.check({"input_ids": rows}))
    assert (facts.bos_id, facts.eos_id) == (1, 2)
    assert facts.origin["bos_id"] == facts.origin["eos_id"] == "inferred from data"


def test_a_doubled_bos_is_still_inferred_so_duplicate_bos_can_fire():
    rows = [[1, 1, 20 + i, 21, 2] for i in range(8)]
    report = labellint.check({"input_ids": rows, "labels": rows})
    assert facts_of(report).bos_id == 1
    assert [(f.code, f.count_rows) for f in report.findings] == [("LL401", 8)]


def test_pad_is_inferred_from_masked_positions_but_not_from_hidden_prompt_text():
    padded = {"input_ids": [[1, 5, 2, 0, 0], [1, 5, 6, 2, 0]],
              "attention_mask": [[1, 1, 1, 0, 0], [1, 1, 1, 1, 0]]}
    assert facts_of(labellint.check(padded)).pad_id == 0
    hidden_prompt = {"input_ids": [[1, 5, 6, 7, 2], [1, 8, 9, 3, 2]],
                     "attention_mask": [[0, 0, 0, 1, 1], [0, 0, 0, 1, 1]]}
    assert facts_of(labellint.check(hidden_prompt)).pad_id is None


def max_length_of(rows):
    return facts_of(labellint.check({"input_ids": rows})).max_length


def test_max_length_is_inferred_from_a_pile_up_at_the_longest_length():
    assert max_length_of([[5, 6, 7]] * 3 + [[5, 6], [5]]) == 3


def test_max_length_is_inferred_from_fixed_length_blocks():
    assert max_length_of([[5, 6, 7, 8]] * 4) == 4


def test_max_length_spike_needs_only_to_beat_the_lengths_just_below_it():
    rows = [[5] * 48] * 5 + [[5] * 12] * 30 + [[5] * n for n in range(13, 30)]
    assert max_length_of(rows) == 48


def test_max_length_is_not_inferred_from_a_tie_or_a_spread():
    assert max_length_of([[5, 6, 7], [5, 6, 7], [5, 6]]) is None
    assert max_length_of([[5, 6, 7]] * 3 + [[5, 6]] * 4) is None
    assert max_length_of([[5, 6, 7], [5, 6], [5]]) is None
    assert max_length_of([[5], [6], [7]]) is None  # alike, but too few to be blocks


def test_given_facts_beat_the_tokenizer_which_beats_the_data(tok):
    rows = {"input_ids": [[7, 20, 21, 8], [7, 22, 23, 8]]}
    facts = facts_of(labellint.check(rows, tok, eos_id=8))
    assert (facts.eos_id, facts.origin["eos_id"]) == (8, "given")
    assert (facts.bos_id, facts.origin["bos_id"]) == (tok.bos_token_id, "tokenizer")


def test_tokenizer_adding_bos_is_found_by_encoding_not_by_flags():
    from labellint.testing import tiny_tokenizer
    from labellint.hf_facts import tokenizer_facts

    assert tokenizer_facts(tiny_tokenizer())["add_bos"] is True
    assert tokenizer_facts(tiny_tokenizer(add_bos=False))["add_bos"] is False


def test_model_embedding_size_beats_tokenizer_length():
    """Tokens added to the tokenizer without resize_token_embeddings are past the table."""
    torch = __import__("pytest").importorskip("torch")
    from transformers import LlamaConfig, LlamaForCausalLM

    from labellint.testing import tiny_tokenizer

    tok = tiny_tokenizer()
    rows = len(tok)
    tok.add_special_tokens({"additional_special_tokens": ["<tool>"]})
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=rows, hidden_size=16, intermediate_size=32,
                                         num_hidden_layers=1, num_attention_heads=2,
                                         num_key_value_heads=1))
    ids = tok("the capital <tool> of france")["input_ids"]
    report = labellint.check({"input_ids": [ids]}, tok, model=model)
    assert (facts_of(report).vocab_size, facts_of(report).origin["vocab_size"]) == (rows, "model")
    (finding,) = [f for f in report.findings if f.code == "LL405"]
    assert finding.positions == ((ids.index(len(tok) - 1),),)
    tokenizer_only = labellint.check({"input_ids": [ids]}, tok, select=["LL405"])
    assert tokenizer_only.findings == []  # the tokenizer knows its added token


def test_max_length_is_not_inferred_below_a_padded_width_no_row_fills():
    """padding="max_length" to 8: a pile-up of repeated rows at 5 real tokens is no cut."""
    rows = [[5, 6, 7, 8, 9]] * 4 + [[5, 6]] * 2
    batch = {"input_ids": [r + [0] * (8 - len(r)) for r in rows],
             "attention_mask": [[1] * len(r) + [0] * (8 - len(r)) for r in rows]}
    report = labellint.check(batch, pad_id=0, select=["LL1"])
    assert facts_of(report).max_length is None
    filled = {k: v + [[5] * 8] * 5 for k, v in batch.items() if k == "input_ids"}
    filled["attention_mask"] = batch["attention_mask"] + [[1] * 8] * 5
    assert facts_of(labellint.check(filled, pad_id=0, select=["LL1"])).max_length == 8


def test_without_a_tokenizer_the_model_configs_special_ids_stand_in():
    from labellint.testing import tiny_llama, tiny_tokenizer
    from labellint.hf_facts import known_facts

    model = tiny_llama()  # config: pad 0, bos 1, eos 2
    alone = known_facts({}, None, model)
    assert (alone.pad_id, alone.bos_id, alone.eos_id) == (0, 1, 2)
    assert alone.origin["eos_id"] == "model"
    model.config.eos_token_id = [2, 7]  # two end ids (Llama 3): none stands in for EOS
    assert known_facts({}, None, model).eos_id is None
    with_tokenizer = known_facts({}, tiny_tokenizer(pad_is_eos=True), model)
    assert with_tokenizer.pad_id == 2 and with_tokenizer.origin["pad_id"] == "tokenizer"
