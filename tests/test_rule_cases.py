"""Cases where a rule must fire alone, or stay silent: mistakes as real pipelines make them,
and correct data that looks like a mistake (each found in review or by trying the tool)."""

import pytest

import labellint

FACTS = dict(pad_id=0, bos_id=1, eos_id=2, vocab_size=100)
IM_START, IM_END, NL, USER, ASSISTANT = 90, 91, 92, 93, 94
CHATML = dict(pad_id=0, eos_id=IM_END, vocab_size=100)


def codes(report):
    return {f.code for f in report.findings}


def test_prompt_hidden_by_attention_is_found_without_any_pad_id():
    """Dataset.map output, no padding, no tokenizer: the usual `labellint check data/`."""
    rows = [{"input_ids": [1, 10 + i, 11, 12, 30, 31, 2], "attention_mask": [0, 0, 0, 0, 1, 1, 1],
             "labels": [-100, -100, -100, -100, 30, 31, 2]} for i in range(8)]
    report = labellint.check(rows)
    assert codes(report) == {"LL201"}, str(report)
    assert report.findings[0].count_rows == 8


def test_padding_added_by_hand_with_attention_on_still_counts_as_padding():
    batch = {"input_ids": [[1, 5, 6, 2, 0, 0], [1, 5, 6, 7, 8, 2]],
             "attention_mask": [[1] * 6, [1] * 6],
             "labels": [[-100, 5, 6, 2, 0, 0], [-100, 5, 6, 7, 8, 2]]}
    report = labellint.check(batch, **FACTS)
    assert [(f.code, f.rows, f.positions) for f in report.findings] == [
        ("LL103", (0,), ((4, 5),))]


def test_left_padded_generation_prompts_without_labels_are_clean(left_tok):
    batch = left_tok(["what is the capital of france?", "hello there"], padding=True)
    assert batch["attention_mask"][1][0] == 0  # really left-padded
    assert labellint.check(dict(batch), left_tok).findings == []


def test_packed_rows_cut_from_a_stream_are_not_truncated_answers():
    """TRL's wrapped packing: fixed-length rows, position_ids restarting, prompts masked."""
    ids = [[1, 10, 11, 30, 31, 2, 1, 12, 13, 32], [33, 34, 2, 1, 14, 15, 35, 36, 2, 1]]
    pos = [[0, 1, 2, 3, 4, 5, 0, 1, 2, 3], [0, 1, 2, 0, 1, 2, 3, 4, 5, 0]]
    labels = [[-100, -100, -100, 30, 31, 2, -100, -100, -100, 32],
              [-100, 34, 2, -100, -100, -100, 35, 36, 2, -100]]
    batch = {"input_ids": ids * 2, "position_ids": pos * 2, "labels": labels * 2}
    report = labellint.check(batch, **FACTS, add_bos=True, max_length=10)
    assert codes(report) == set(), str(report)


def test_chatml_answer_cut_at_max_length_is_truncation_not_a_masked_eos():
    """The user turn's <|im_end|> sits in the prompt; the answer's was cut off."""
    prompt = [IM_START, USER, 10, 11, IM_END, NL, IM_START, ASSISTANT]
    full = [prompt + [30 + i, 31, IM_END, NL] for i in range(4)]
    cut = [prompt + [40, 41, 42, 43] for _ in range(4)]  # 12 tokens: the max length
    rows = [{"input_ids": r, "labels": [-100] * len(prompt) + r[len(prompt):]}
            for r in full[:2] + cut]
    report = labellint.check(rows, **CHATML, max_length=12)
    assert codes(report) == {"LL409"}, str(report)
    assert report.findings[0].rows == (2, 3, 4, 5)


def test_bos_equal_to_eos_is_not_an_eos_in_the_row():
    """OPT-style tokenizers start rows with </s>: a row without a final EOS is LL404 alone."""
    opt = dict(pad_id=1, bos_id=2, eos_id=2, vocab_size=100)
    batch = {"input_ids": [[2, 10, 11, 30, 31]], "labels": [[-100, -100, -100, 30, 31]]}
    assert codes(labellint.check(batch, **opt)) == {"LL404"}


def test_bos_equal_to_eos_still_finds_the_masked_final_eos():
    opt = dict(pad_id=1, bos_id=2, eos_id=2, vocab_size=100)
    batch = {"input_ids": [[2, 10, 11, 30, 31, 2]], "labels": [[2, -100, -100, 30, 31, -100]]}
    assert codes(labellint.check(batch, **opt)) == {"LL403"}


def test_pad_id_that_reads_as_end_of_turn_is_padding():
    """Qwen pads with <|endoftext|>; without an attention_mask the pad run is not an EOS."""
    batch = {"input_ids": [[1, 5, 6, 30, 31, 3, 3, 3]],
             "labels": [[-100, -100, -100, 30, 31, -100, -100, -100]]}
    report = labellint.check(batch, pad_id=3, bos_id=1, eos_id=2, end_of_turn_ids=(3,))
    assert codes(report) == {"LL404"}, str(report)


def test_tokenizer_facts_never_list_the_pad_token_as_an_end_of_turn():
    from labellint.testing import tiny_tokenizer
    from labellint.hf_facts import tokenizer_facts

    tok = tiny_tokenizer()
    tok.add_special_tokens({"pad_token": "<|endoftext|>"})
    facts = tokenizer_facts(tok)
    assert facts["pad_id"] not in facts["end_of_turn_ids"]


def test_a_label_past_the_vocabulary_is_one_finding():
    batch = {"input_ids": [[1, 5, 6, 2]], "labels": [[-100, 5, 500, 2]]}
    assert codes(labellint.check(batch, **FACTS)) == {"LL104"}


def test_minus_one_as_ignore_index_on_padding_is_one_finding():
    batch = {"input_ids": [[1, 5, 6, 2, 0]], "attention_mask": [[1, 1, 1, 1, 0]],
             "labels": [[-1, 5, 6, 2, -1]]}
    report = labellint.check(batch, **FACTS)
    assert [(f.code, f.count_tokens) for f in report.findings] == [("LL104", 2)]


def test_input_ids_padded_with_ignore_index_is_out_of_vocab_only():
    batch = {"input_ids": [[1, 17, 32, 2, -100, -100]], "attention_mask": [[1, 1, 1, 1, 0, 0]],
             "labels": [[-100, -100, 32, 2, -100, -100]]}
    assert codes(labellint.check(batch, **FACTS)) == {"LL405"}


@pytest.mark.parametrize("max_examples", [-1, None, "5"])
def test_max_examples_must_be_a_count(max_examples):
    with pytest.raises(labellint.LabelLintError, match="max_examples"):
        labellint.check({"input_ids": [[1, 2]]}, max_examples=max_examples)


def test_selecting_no_rule_is_an_error():
    with pytest.raises(labellint.LabelLintError, match="no rule is selected"):
        labellint.check({"input_ids": [[1, 2]]}, select=["LL1"], ignore=["LL1"])


@pytest.mark.parametrize("facts, message", [
    (dict(vocab_size=0), "vocab_size must be a positive"),
    (dict(pad_id=-5), "pad_id must be a token id"),
    (dict(eos_id=7, vocab_size=5), "eos_id 7 is not below vocab_size 5"),
])
def test_impossible_facts_are_errors(facts, message):
    with pytest.raises(labellint.LabelLintError, match=message):
        labellint.check({"input_ids": [[1, 2]]}, **facts)


def test_a_tokenizer_of_the_wrong_kind_is_an_error():
    with pytest.raises(labellint.LabelLintError, match="tokenizer must be"):
        labellint.check({"input_ids": [[1, 2]]}, tokenizer=5)


def test_pandas_dataframe_is_read_like_a_table():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"input_ids": [[1, 5, 2, 0]], "attention_mask": [[1, 1, 1, 0]],
                       "labels": [[-100, 5, 2, 0]]})
    assert [(f.code, f.rows) for f in labellint.check(df, **FACTS).findings] == [("LL103", (0,))]


def test_llava_image_placeholders_are_not_out_of_vocab():
    batch = {"input_ids": [[1, 5, -200, 6, 2]], "labels": [[-100, -100, -100, 6, 2]]}
    assert labellint.check(batch, **FACTS).findings == []
    report = labellint.check(batch, **FACTS, options={"LL405": {"placeholder_ids": ()}})
    assert [(f.code, f.positions) for f in report.findings] == [("LL405", ((2,),))]


def test_marker_text_that_is_an_ordinary_token_ends_no_answer():
    """A byte-level vocabulary holds `</s>` as an ordinary merge (Qwen2's id 128247): answers
    ending in that token end with text, not a stop, so they are missing their EOS."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<|endoftext|>": 0, "<|im_end|>": 1, "</s>": 2, "hello": 3, "world": 4}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<|endoftext|>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>",
                                  pad_token="<|endoftext|>")
    ids = tok("hello world </s>")["input_ids"]
    assert ids == [3, 4, 2], "</s> is one ordinary token here"
    rows = [{"input_ids": ids, "labels": [-100, 4, 2]}, {"input_ids": [3, 4, 1],
                                                          "labels": [-100, 4, 1]}]
    report = labellint.check(rows, tokenizer=tok)
    (missing,) = [f for f in report.findings if f.code == "LL404"]
    assert missing.rows == (0,)
