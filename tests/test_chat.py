"""Chat-template rules on real chat data: templates rendered by transformers, masks built by
`apply_chat_template(..., return_assistant_tokens_mask=True)` and by TRL's SFT preparation, and
the masking mistakes people really make. Each test names the exact rows a defect is planted in.
"""

import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

import labellint  # noqa: E402
from labellint.chat_format import ChatFormat, chat_format  # noqa: E402
from labellint.turns import turns_of  # noqa: E402
from labellint.testing import chatml_tokenizer, llama3_tokenizer  # noqa: E402

CHAT_CODES = {"LL403", "LL407", "LL601", "LL602", "LL603"}
CONVERSATIONS = [
    [{"role": "system", "content": "you are helpful"},
     {"role": "user", "content": "what is the capital of france?"},
     {"role": "assistant", "content": "the capital of france is paris."},
     {"role": "user", "content": "hello there"},
     {"role": "assistant", "content": "hi! how can i help you today?"}],
    [{"role": "user", "content": "translate to german: good morning."},
     {"role": "assistant", "content": "guten morgen."}],
    [{"role": "user", "content": "how many legs does a spider have?"},
     {"role": "assistant", "content": "a spider has eight legs."},
     {"role": "user", "content": "write a haiku about the sea."},
     {"role": "assistant", "content": "waves fold into foam"}],
    [{"role": "user", "content": "numbers 0 1 2 3"},
     {"role": "assistant", "content": "4 5 6 7 8 9 10"}],
]
MULTI_TURN = [0, 2]
FAMILIES = {"chatml": chatml_tokenizer, "llama3": llama3_tokenizer}


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family(request):
    return request.param


def codes(report, only=CHAT_CODES):
    return {f.code for f in report.findings} & only


def rows_of(report, code):
    (f,) = [f for f in report.findings if f.code == code]
    assert f.count_rows == len(f.rows), "all rows fit in the examples"
    return set(f.rows)


def rendered(tok, conv):
    out = tok.apply_chat_template(conv, return_assistant_tokens_mask=True, return_dict=True)
    return list(out["input_ids"]), list(out["assistant_masks"])


def masked_rows(tok, convs=CONVERSATIONS):
    """Labels from the template's own assistant masks: the correct recipe."""
    rows = []
    for conv in convs:
        ids, mask = rendered(tok, conv)
        rows.append({"input_ids": ids, "attention_mask": [1] * len(ids),
                     "labels": [i if m else -100 for i, m in zip(ids, mask)]})
    return rows


def copied_rows(tok, convs=CONVERSATIONS):
    """labels = input_ids: the whole conversation trained."""
    rows = masked_rows(tok, convs)
    return [dict(r, labels=list(r["input_ids"])) for r in rows]


# -- finding the markers -----------------------------------------------------------------------


@pytest.mark.parametrize("name, header, end", [
    ("chatml", "<|im_start|>assistant\n", "<|im_end|>"),
    ("llama3", "<|start_header_id|>assistant<|end_header_id|>\n\n", "<|eot_id|>"),
])
def test_markers_are_read_from_the_chat_template(name, header, end):
    tok = FAMILIES[name]()
    fmt = chat_format(tok)
    assert fmt.origin == "chat template"
    assert tok.decode(list(dict(fmt.headers)["assistant"])) == header
    assert tok.decode(list(fmt.core("assistant"))) == header.rstrip()
    assert tok.decode(list(fmt.turn_end)) == end
    assert set(fmt.roles) == {"system", "user", "assistant"}
    assert dict(fmt.special)[end] == tok.convert_tokens_to_ids(end)


TRL_TEMPLATES = Path(__import__("importlib").util.find_spec("trl").origin).parent / \
    "chat_templates" if __import__("importlib").util.find_spec("trl") else None


def _tokenizer_for(template: str):
    """Our tiny BPE with every `<...>` marker of a real template registered as special."""
    from tokenizers import AddedToken, Tokenizer
    from transformers import PreTrainedTokenizerFast

    from labellint.testing import _trained

    tok = Tokenizer.from_str(_trained())
    markers = sorted(set(re.findall(r"<[|a-z_]+[|a-z_]*>", template)) - {"<s>", "</s>"})
    tok.add_special_tokens([AddedToken(m, special=True, normalized=False) for m in markers])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>", pad_token="<pad>", chat_template=template)


@pytest.mark.skipif(TRL_TEMPLATES is None, reason="trl is not installed")
@pytest.mark.parametrize("name, header, end", [
    ("qwen2_5", "<|im_start|>assistant", "<|im_end|>"),
    ("qwen3", "<|im_start|>assistant", "<|im_end|>"),        # <think></think> on the last turn
    ("llama3", "<|start_header_id|>assistant<|end_header_id|>", "<|eot_id|>"),
    ("llama3_1", "<|start_header_id|>assistant<|end_header_id|>", "<|eot_id|>"),  # a date line
    ("gemma", "<start_of_turn>model", "<end_of_turn>"),      # no system role: rejected by it
    ("phi3", "<|assistant|>", "<|end|>"),
])
def test_markers_of_real_model_templates(name, header, end):
    """The templates Qwen, Llama 3, Gemma and Phi-3 ship (stored in TRL), parsed unchanged."""
    tok = _tokenizer_for((TRL_TEMPLATES / f"{name}.jinja").read_text())
    fmt = chat_format(tok)
    assert tok.decode(list(fmt.core("assistant"))) == header
    assert tok.decode(list(fmt.turn_end)) == end
    assert "user" in fmt.roles


def test_a_tokenizer_without_template_falls_back_to_a_known_family():
    tok = chatml_tokenizer()
    tok.chat_template = None
    fmt = chat_format(tok)
    assert fmt.origin == "known family"
    assert tok.decode(list(fmt.core("user"))) == "<|im_start|>user"


def test_the_facts_carry_the_markers_and_the_template_turn_end(family):
    tok = FAMILIES[family]()
    facts = labellint.check(masked_rows(tok), tokenizer=tok).sources[0].facts
    assert facts.chat == chat_format(tok)
    assert set(facts.chat.turn_end) <= set(facts.stop_ids)
    assert facts.assistant_only_loss is True
    assert facts.origin["assistant_only_loss"] == "inferred from data"


# -- correct data is clean ---------------------------------------------------------------------


def test_template_assistant_masks_are_clean(family):
    tok = FAMILIES[family]()
    report = labellint.check(masked_rows(tok), tokenizer=tok)
    assert codes(report, {f.code for f in report.findings}) == set(), str(report)


def test_padded_collator_batch_of_template_masks_is_clean(family):
    from transformers import DataCollatorForSeq2Seq

    tok = FAMILIES[family]()
    batch = DataCollatorForSeq2Seq(tok, label_pad_token_id=-100)(masked_rows(tok))
    report = labellint.check(dict(batch), tokenizer=tok)
    assert codes(report, {f.code for f in report.findings}) == set(), str(report)


def test_whole_conversations_trained_on_purpose_are_not_flagged(family):
    """completion_only_loss=False / labels = input_ids everywhere: a choice, not a bug."""
    tok = FAMILIES[family]()
    report = labellint.check(copied_rows(tok), tokenizer=tok)
    assert codes(report) == set(), str(report)
    assert report.sources[0].facts.assistant_only_loss is False


def test_labels_shifted_by_the_dataset_are_judged_by_the_token_they_train(family):
    """torchtune-style labels (labels[t] is the target of position t) from the same masks."""
    tok = FAMILIES[family]()
    rows = [dict(r, labels=r["labels"][1:] + [-100]) for r in masked_rows(tok)]
    report = labellint.check(rows, tokenizer=tok, label_shift="dataset")
    assert codes(report) == set(), str(report)


# -- TRL's SFT preparation ---------------------------------------------------------------------


def _sft_batches(tok, train, tmp_path, **config):
    pytest.importorskip("trl")
    datasets = pytest.importorskip("datasets")
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl import SFTConfig, SFTTrainer

    datasets.disable_progress_bars()
    import torch

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2, pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id))
    args = SFTConfig(output_dir=str(tmp_path), report_to=[], use_cpu=True, bf16=False,
                     per_device_train_batch_size=2,
                     **config)
    trainer = SFTTrainer(model=model, args=args, train_dataset=datasets.Dataset.from_list(train),
                         processing_class=tok)
    rows = [trainer.train_dataset[i] for i in range(len(trainer.train_dataset))]
    return [trainer.data_collator(rows[i:i + 2]) for i in range(0, len(rows), 2)]


@pytest.mark.slow
def test_trl_assistant_only_loss_is_clean(family, tmp_path):
    tok = FAMILIES[family]()
    batches = _sft_batches(tok, [{"messages": c} for c in CONVERSATIONS], tmp_path,
                           assistant_only_loss=True)
    report = labellint.check(batches, tokenizer=tok)
    assert codes(report) == set(), str(report)
    assert report.sources[0].facts.assistant_only_loss is True


@pytest.mark.parametrize("name, template", [("chatml", "qwen2_5_training"),
                                            ("llama3", "llama3_training")])
@pytest.mark.slow
def test_trl_training_templates_are_clean(name, template, tmp_path):
    """TRL's own training templates; Qwen2.5's trains the newline after the header."""
    pytest.importorskip("trl")
    tok = FAMILIES[name]()
    tok.chat_template = (TRL_TEMPLATES / f"{template}.jinja").read_text()
    batches = _sft_batches(tok, [{"messages": c} for c in CONVERSATIONS], tmp_path,
                           assistant_only_loss=True)
    report = labellint.check(batches, tokenizer=tok)
    assert codes(report) == set(), str(report)


@pytest.mark.slow
def test_trl_completion_only_loss_on_prompt_completion_data_is_clean(family, tmp_path):
    tok = FAMILIES[family]()
    train = [{"prompt": c[:-1], "completion": c[-1:]} for c in CONVERSATIONS]
    batches = _sft_batches(tok, train, tmp_path, completion_only_loss=True)
    report = labellint.check(batches, tokenizer=tok)
    assert codes(report) == set(), str(report)


@pytest.mark.slow
def test_trl_with_a_template_whose_generation_block_leaves_out_the_turn_end(family, tmp_path):
    """`{% generation %}content{% endgeneration %}<|im_end|>`: TRL warns, the model never stops."""
    tok = FAMILIES[family](end_in_generation=False)
    batches = _sft_batches(tok, [{"messages": c} for c in CONVERSATIONS], tmp_path,
                           assistant_only_loss=True)
    report = labellint.check(batches, tokenizer=tok)
    assert codes(report) == {"LL603"}, str(report)
    assert rows_of(report, "LL603") == set(range(len(CONVERSATIONS)))
    (f,) = report.findings
    assert f.severity == "error"
    # every assistant turn's end is named, and nothing else
    assert sum(len(p) for p in f.positions) == sum(
        sum(m["role"] == "assistant" for m in c) for c in CONVERSATIONS)


# -- the real mistakes -------------------------------------------------------------------------


def test_one_row_with_labels_copied_among_assistant_only_rows(family):
    tok = FAMILIES[family]()
    rows = masked_rows(tok)
    rows[2]["labels"] = list(rows[2]["input_ids"])
    report = labellint.check(rows, tokenizer=tok)
    assert codes(report) == {"LL601"}, str(report)
    assert rows_of(report, "LL601") == {2}


def dcfcolm(rows, tok, response, instruction=None):
    """DataCollatorForCompletionOnlyLM's masking (trl < 0.20): train from the end of each
    response template; with an instruction template, mask again from each instruction on."""
    out = []
    for r in rows:
        ids = r["input_ids"]
        labels = [-100] * len(ids)
        resp = tok.encode(response, add_special_tokens=False)
        inst = tok.encode(instruction, add_special_tokens=False) if instruction else None

        resp_at = _starts(ids, resp)
        if inst is None:
            first = resp_at[0] + len(resp)
            labels[first:] = ids[first:]
        else:
            inst_at = _starts(ids, inst)
            for a in resp_at:
                stop = min([i for i in inst_at if i > a] + [len(ids)])
                labels[a + len(resp): stop] = ids[a + len(resp): stop]
        out.append(dict(r, labels=labels))
    return out


def _starts(ids, seq):
    return [i for i in range(len(ids) - len(seq) + 1) if ids[i:i + len(seq)] == seq]


def test_response_template_alone_trains_later_user_turns(family):
    """The classic multi-turn slip: without an instruction template, every turn after the
    first answer is trained, user turns included."""
    tok = FAMILIES[family]()
    header = tok.decode(list(dict(chat_format(tok).headers)["assistant"]))
    user = tok.decode(list(dict(chat_format(tok).headers)["user"]))
    report = labellint.check(dcfcolm(masked_rows(tok), tok, header), tokenizer=tok)
    assert codes(report) == {"LL601"}, str(report)
    assert rows_of(report, "LL601") == set(MULTI_TURN)
    fixed = labellint.check(dcfcolm(masked_rows(tok), tok, header, user), tokenizer=tok)
    assert codes(fixed) == set(), str(fixed)


def message_spans(tok, conv):
    """Token spans of each message by rendering growing prefixes of the conversation: a
    common home-made masking, which gives each message its header."""
    spans, prev = [], 0
    for i in range(1, len(conv) + 1):
        n = len(tok.apply_chat_template(conv[:i], return_dict=True)["input_ids"])
        spans.append((conv[i - 1]["role"], prev, n))
        prev = n
    return spans


def test_masking_by_message_spans_trains_the_assistant_header(family):
    tok = FAMILIES[family]()
    rows = masked_rows(tok)
    planted = {1, 3}
    for r in planted:
        labels = [-100] * len(rows[r]["input_ids"])
        for role, lo, hi in message_spans(tok, CONVERSATIONS[r]):
            if role == "assistant":
                labels[lo:hi] = rows[r]["input_ids"][lo:hi]
        rows[r]["labels"] = labels
    report = labellint.check(rows, tokenizer=tok)
    assert codes(report) == {"LL602"}, str(report)
    assert rows_of(report, "LL602") == planted
    core = len(chat_format(tok).core("assistant"))
    f = next(f for f in report.findings if f.code == "LL602")
    assert all(len(p) == core for p in f.positions)  # one header per planted row, whole core


def _run_on_to_the_next_header(tok, row):
    """Labels that train each answer and then the next turn's header, nothing of its content."""
    ids = row["input_ids"]
    user = list(chat_format(tok).core("user"))
    heads = _starts(ids, user)[1:]  # the first user turn follows no answer
    labels = list(row["labels"])
    for h in heads:
        labels[h: h + len(user)] = ids[h: h + len(user)]
    return dict(row, labels=labels), len(heads)


def test_a_mask_running_into_the_next_user_header_is_ll601_even_in_a_lone_row(family):
    tok = FAMILIES[family]()
    row, n_heads = _run_on_to_the_next_header(tok, masked_rows(tok)[MULTI_TURN[0]])
    assert n_heads == 1
    # one row is too few to infer assistant_only_loss; its masked first user turn is the evidence
    report = labellint.check([row], tokenizer=tok)
    assert report.sources[0].facts.assistant_only_loss is None
    assert codes(report) == {"LL601"}, str(report)
    (f,) = [f for f in report.findings if f.code == "LL601"]
    assert f.count_tokens == len(chat_format(tok).core("user"))
    # said outright that whole conversations are trained: not judged
    report = labellint.check([row], tokenizer=tok, assistant_only_loss=False)
    assert codes(report) == set(), str(report)


def test_response_template_short_of_the_header_end_is_flagged():
    """Llama-3 with response_template '<|start_header_id|>assistant': its `<|end_header_id|>`
    is trained."""
    tok = llama3_tokenizer()
    rows = dcfcolm(masked_rows(tok), tok, "<|start_header_id|>assistant",
                   "<|start_header_id|>user")
    report = labellint.check(rows, tokenizer=tok)
    assert codes(report) == {"LL602"}, str(report)
    assert rows_of(report, "LL602") == set(range(len(CONVERSATIONS)))


def test_pad_equal_to_the_turn_end_masked_by_id_is_reported_once():
    """Llama-3 with pad_token = eos_token (`<|eot_id|>`) and DataCollatorForLanguageModeling:
    every `<|eot_id|>` is masked with the padding. LL603 reports it; LL403 leaves chat rows
    to it."""
    from transformers import DataCollatorForLanguageModeling

    tok = llama3_tokenizer()
    tok.pad_token = tok.eos_token
    features = [{"input_ids": r["input_ids"]} for r in masked_rows(tok)]
    batch = DataCollatorForLanguageModeling(tok, mlm=False)(features)
    report = labellint.check(dict(batch), tokenizer=tok)
    assert codes(report) == {"LL603"}, str(report)
    assert rows_of(report, "LL603") == set(range(len(CONVERSATIONS)))


def test_training_only_the_last_turn_end_is_a_choice_unless_every_turn_is_asked():
    """Axolotl's train_on_eos='last': earlier turn ends masked, the last one trained."""
    tok = chatml_tokenizer()
    rows = masked_rows(tok)
    end = chat_format(tok).turn_end[0]
    for r in MULTI_TURN:
        ids, labels = rows[r]["input_ids"], rows[r]["labels"]
        first_end = next(i for i, (t, lab) in enumerate(zip(ids, labels))
                         if t == end and lab != -100)
        labels[first_end] = -100
    assert codes(labellint.check(rows, tokenizer=tok)) == set()
    report = labellint.check(rows, tokenizer=tok, options={"LL603": {"every_turn": True}})
    assert rows_of(report, "LL603") == set(MULTI_TURN)


def test_findings_do_not_depend_on_chunking(family):
    tok = FAMILIES[family]()
    rows = masked_rows(tok) * 3
    rows[5]["labels"] = list(rows[5]["input_ids"])
    one = labellint.check(rows, tokenizer=tok).to_dict()["findings"]
    many = labellint.check(rows, tokenizer=tok, chunk_rows=2).to_dict()["findings"]
    assert one == many and {f["code"] for f in one} == {"LL601"}


# -- LL407 special-token-split -----------------------------------------------------------------


def test_markers_that_are_not_tokens_are_split_in_every_row():
    tok = chatml_tokenizer(special_markers=False)
    report = labellint.check(masked_rows(tok), tokenizer=tok)
    assert "LL407" in codes(report)
    assert rows_of(report, "LL407") == set(range(len(CONVERSATIONS)))


def test_template_text_encoded_with_split_special_tokens(family):
    tok = FAMILIES[family]()
    rows = masked_rows(tok)
    text = tok.apply_chat_template(CONVERSATIONS[1], tokenize=False)
    ids = tok(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
    rows[1] = {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": list(ids)}
    report = labellint.check(rows, tokenizer=tok, select=["LL407"])
    assert rows_of(report, "LL407") == {1}


def test_eos_written_as_text_and_encoded_without_special_tokens():
    """`prompt + answer + '</s>'` encoded by a tokenizer that does not parse special text."""
    from labellint.testing import tiny_tokenizer

    tok = tiny_tokenizer()
    good = tok("hello there" + tok.eos_token)["input_ids"]
    bad = tok("hello there" + tok.eos_token, split_special_tokens=True)["input_ids"]
    html = tok("the <s>quick</s> brown fox" + tok.eos_token)["input_ids"]
    report = labellint.check({"input_ids": [good, bad, html]}, tokenizer=tok, select=["LL407"])
    assert rows_of(report, "LL407") == {1}


def test_special_token_split_decodes_a_bounded_sample(monkeypatch):
    tok = chatml_tokenizer()
    calls = []
    rows = masked_rows(tok) * 25  # 100 rows, one chunk
    report = labellint.check(rows, tokenizer=tok, select=["LL407"],
                             options={"LL407": {"sample_rows": 7}})
    assert codes(report) == set()
    fmt = chat_format(tok)
    counting = ChatFormat(headers=fmt.headers, turn_end=fmt.turn_end, special=fmt.special,
                          decode=lambda ids: calls.append(1) or tok.decode(ids))
    labellint.check(rows, chat=counting, select=["LL407"], options={"LL407": {"sample_rows": 7}})
    assert len(calls) == 7


# -- facts given by hand -----------------------------------------------------------------------


def test_a_chat_format_given_by_hand_matches_the_tokenizers():
    tok = chatml_tokenizer()
    fmt = chat_format(tok)
    given = ChatFormat(headers=dict(fmt.headers), turn_end=list(fmt.turn_end))
    rows = masked_rows(tok)
    rows[0]["labels"] = list(rows[0]["input_ids"])
    report = labellint.check(rows, chat=given, eos_id=tok.eos_token_id)
    assert rows_of(report, "LL601") == {0}


@pytest.mark.parametrize("bad", [{"headers": {"user": []}}, {"headers": {"user": "x"}},
                                 {"turn_end": 3}])
def test_a_malformed_chat_format_is_a_clear_error(bad):
    with pytest.raises(labellint.LabelLintError):
        ChatFormat(**bad)


def test_chat_must_be_a_chat_format():
    with pytest.raises(labellint.LabelLintError, match="ChatFormat"):
        labellint.check({"input_ids": [[1, 2]]}, chat={"user": [1]})


def test_chat_rules_skip_without_a_chat_template():
    report = labellint.check({"input_ids": [[1, 5, 2]], "labels": [[-100, 5, 2]]}, eos_id=2)
    skipped = report.sources[0].skipped
    assert {"LL601", "LL602", "LL603", "LL407"} <= set(skipped)


def test_segmentation_is_vectorised_over_large_batches(family):
    """Segmenting 20k chat rows takes well under a second (no per-token Python)."""
    import time

    tok = FAMILIES[family]()
    rows = masked_rows(tok)
    ids = np.concatenate([np.asarray(r["input_ids"]) for r in rows] * 5000)
    labels = np.concatenate([np.asarray(r["labels"]) for r in rows] * 5000)
    lengths = np.array([len(r["input_ids"]) for r in rows] * 5000)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    facts = labellint.Facts(chat=chat_format(tok), eos_id=tok.eos_token_id)
    b = labellint.Batch(ids, offsets, labels=labels, facts=facts)
    start = time.perf_counter()
    t = turns_of(b)
    assert t.assistant.sum() == 5000 * sum(
        m["role"] == "assistant" for c in CONVERSATIONS for m in c)
    assert time.perf_counter() - start < 2.0


def test_the_command_line_checks_chat_data_with_a_tokenizer_folder(tmp_path):
    """`labellint check data.jsonl --tokenizer DIR` finds the template in the saved tokenizer;
    --no-assistant-only-loss declares full-sequence training."""
    import json

    from labellint.cli import main

    tok = chatml_tokenizer()
    tok.save_pretrained(tmp_path / "tok")
    rows = masked_rows(tok)
    rows[2]["labels"] = list(rows[2]["input_ids"])
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ["check", str(data), "--tokenizer", str(tmp_path / "tok"), "--select", "LL6",
            "--format", "json"]
    assert main(args) == 1
    assert main(args + ["--no-assistant-only-loss"]) == 0


def test_whole_conversations_cut_at_max_length_are_truncated_not_packed():
    """TRL's default for `messages` data trains every token; a row cut at max_length ends
    mid-answer (truncated-target), and its <|im_end|> turn ends are no document boundaries."""
    tok = chatml_tokenizer()
    cut = 48
    rows = []
    for conv in CONVERSATIONS:
        ids = tok.apply_chat_template(conv, tokenize=True, return_dict=True)["input_ids"][:cut]
        rows.append({"input_ids": ids, "labels": list(ids)})
    end = tok.convert_tokens_to_ids("<|im_end|>")
    # Cut rows, except one that happens to end on a turn end and the template's newline.
    cut_rows = [i for i, r in enumerate(rows) if len(r["input_ids"]) == cut
                and end not in r["input_ids"][-2:]]
    assert cut_rows
    report = labellint.check(rows, tokenizer=tok, max_length=cut)
    assert "LL501" not in {f.code for f in report.findings}, str(report)
    assert [f.rows for f in report.findings if f.code == "LL409"] == [tuple(cut_rows)]


def test_a_tokenizer_without_bos_turns_the_bos_rules_off_by_design():
    """Qwen-style ChatML has no BOS: nothing to infer in its place, nothing to ask the user."""
    tok = chatml_tokenizer()
    assert tok.bos_token_id is None
    report = labellint.check(masked_rows(tok), tokenizer=tok)
    source = report.sources[0]
    assert source.facts.bos_id is None
    assert source.skipped["LL401"] == "the tokenizer has no BOS token"
    assert {"LL401", "LL402", "LL406"} <= set(source.skipped_by_design)
    assert "LL401" not in str(report)


@pytest.mark.parametrize("rows", ["plain", "mixed"])
def test_a_chat_tokenizer_checks_rows_without_chat_turns(family, rows):
    """Pretraining text under a chat tokenizer: rows with no header at all check cleanly, alone
    or beside chat rows (a batch with no turn used to crash LL601/LL602)."""
    tok = FAMILIES[family]()
    plain = [tok("the quick brown fox")["input_ids"] + [tok.eos_token_id],
             tok("hello there")["input_ids"] + [tok.eos_token_id]]
    batch = [{"input_ids": ids, "labels": list(ids)} for ids in plain]
    if rows == "mixed":
        batch += masked_rows(tok)
    report = labellint.check(batch, tokenizer=tok)
    assert report.ok, report
    assert codes(report) == set()
