"""The template sweep: every chat template in the llama-cpp-python 0.3.36 sdist, under each real
vocabulary whose tokens hold its markers, judged on rows built as training code builds them.

A template qualifies for a vocabulary when transformers renders a plain conversation with it and
the markers labellint itself reads from it (`chat_format.chat_format`: the role headers and
the turn end) are each one token of that vocabulary. Rows are the rendered conversations,
tokenized, with labels on the assistant contents and each assistant turn's end-of-turn marker:
from the template's `{% generation %}` masks where it has them, else from the character offsets
of the contents and of the turn end that follows each. Every template is in the table the
fixture prints, with its vocabularies or the reason it qualifies for none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pytest

import labellint
from labellint.chat_format import MARKER, chat_format

# The variant whose special tokens (BOS, EOS, pad) each vocabulary's tokenizer carries: the
# Instruct model's where there is one, since those are what chat data is built with.
VARIANT = {"llama-bpe": "llama3-instruct", "llama-spm": "llama2", "qwen2": "qwen2.5-instruct",
           "qwen35": "qwen3.5-instruct", "gemma-4": "gemma4-instruct",
           "phi-3": "phi3.5-instruct", "gpt-2": "gpt2"}
CHAT_RULES = ("LL601", "LL602", "LL603")

# Short conversations with distinct contents (so each is found once in the render), multi-turn
# like real SFT data: system, user, assistant, user, assistant.
CONVERSATIONS = [
    ("You are a terse geography tutor.", "What is the capital of France?",
     "Paris is the capital of France.", "And of Spain?", "Madrid is the capital of Spain."),
    ("Answer in one sentence.", "Name a primary colour.", "Blue is a primary colour.",
     "Name another one.", "Red is another primary colour."),
    ("You help with arithmetic.", "What is seven times six?", "Seven times six is 42.",
     "And eight times three?", "Eight times three is 24."),
    ("You are a helpful assistant.", "Who wrote Hamlet?", "William Shakespeare wrote Hamlet.",
     "When, roughly?", "He wrote it around 1600."),
]
GENERATION = re.compile(r"\{%-?\s*generation\s*-?%\}")
FULL_ROW = 2              # the row that trains every token, prompt turns included
UNSTOPPED_ROWS = (1, 3)   # the rows whose assistant turns end with a masked end-of-turn


def messages(conv: tuple[str, ...], system: bool) -> list[dict[str, str]]:
    roles = ("system", "user", "assistant", "user", "assistant")
    out = [{"role": r, "content": c} for r, c in zip(roles, conv)]
    return out if system else out[1:]


@dataclass
class Row:
    input_ids: list[int]
    assistant: np.ndarray    # trained in a correct assistant-only row
    turn_end: np.ndarray     # the assistant turns' end-of-turn tokens


@dataclass
class Entry:
    """One template's line of the sweep table."""

    template: str
    vocabs: list[str] = field(default_factory=list)    # the vocabularies it qualifies for
    reason: str = ""                                    # why it qualifies for none
    notes: dict[str, str] = field(default_factory=dict)  # vocab -> why not, for the table


def _render(tok, system: bool) -> str:
    return tok.apply_chat_template(messages(CONVERSATIONS[0], system), tokenize=False)


def _markers(tok, fmt) -> list[str]:
    """The marker texts in labellint's headers and turn end, as the tokenizer writes them."""
    texts = [tok.decode(list(ids)) for _, ids in fmt.headers] + [tok.decode(list(fmt.turn_end))]
    return sorted({m for t in texts for m in MARKER.findall(t)})


def _single(tok, text: str) -> bool:
    return len(tok.encode(text, add_special_tokens=False)) == 1


def qualify(tok, template: str) -> tuple[bool | None, str]:
    """(whether the render needs no system turn dropped, None if it cannot render, and the
    reason it does not qualify, "" when it does) for the tokenizer carrying `template`."""
    tok.chat_template = template
    system, error = None, ""
    for with_system in (True, False):  # some templates refuse a system turn (Gemma 2)
        try:
            text = _render(tok, with_system)
        except Exception as e:  # noqa: BLE001 - a template's own exceptions are its reason
            error = f"{type(e).__name__}: {str(e).splitlines()[0][:80] if str(e) else ''}"
            continue
        system = with_system
        break
    if system is None:
        return None, f"does not render a plain conversation ({error})"
    # Cheap pre-filter, before reading the template: labellint's headers are `<...>` texts of
    # the render, so a vocabulary holding none of them as one token (the tokenizer's own BOS
    # and EOS, which the template may write, aside) cannot qualify.
    own = {tok.bos_token, tok.eos_token, tok.pad_token, tok.unk_token}
    marks = sorted(set(MARKER.findall(text)) - own)
    if not any(_single(tok, m) for m in marks):
        return system, (f"none of {', '.join(marks[:4])}{' ...' if len(marks) > 4 else ''} "
                        "is a single token" if marks else "the render holds no marker")
    fmt = chat_format(tok)
    if fmt is None or fmt.origin != "chat template" or "assistant" not in fmt.roles:
        return system, "labellint reads no assistant header and turn end from the template"
    if len(fmt.roles) < 2:
        return system, f"labellint reads only the {'/'.join(fmt.roles)} header"
    marks = _markers(tok, fmt)
    if not marks:
        return system, "the headers and turn end hold no special-token marker"
    split = [m for m in marks if not _single(tok, m)]
    if split:
        return system, f"{', '.join(split)} not single tokens"
    for conv in CONVERSATIONS:  # the spans are found from the contents written verbatim
        text = tok.apply_chat_template(messages(conv, system), tokenize=False)
        missing = [c for c in messages(conv, system) if c["content"] not in text]
        if missing:
            return system, f"the render rewrites the {missing[0]['role']} content"
    return system, ""


def build_row(tok, conv, system: bool, fmt) -> Row:
    """One conversation rendered and tokenized as SFT code does, with its assistant spans."""
    msgs = messages(conv, system)
    end_ids = set(fmt.turn_end)
    if GENERATION.search(tok.chat_template):
        # the template marks its trained tokens itself (TRL's assistant_only_loss)
        out = tok.apply_chat_template(msgs, tokenize=True, return_dict=True,
                                      return_assistant_tokens_mask=True)
        ids = list(out["input_ids"])
        assistant = np.asarray(out["assistant_masks"], dtype=bool)
        turn_end = assistant & np.isin(ids, list(end_ids))
        return Row(ids, assistant, turn_end)
    text = tok.apply_chat_template(msgs, tokenize=False)
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    starts = np.array([s for s, _ in enc["offset_mapping"]])
    end_text = tok.decode(list(fmt.turn_end))
    assistant = np.zeros(len(ids), dtype=bool)
    turn_end = np.zeros(len(ids), dtype=bool)
    cursor = 0
    for m in msgs:
        at = text.index(m["content"], cursor)
        cursor = at + len(m["content"])
        if m["role"] != "assistant":
            continue
        stop = text.find(end_text, cursor)
        assert stop >= 0 and not text[cursor:stop].strip(), (
            f"no {end_text!r} after the assistant content in {text!r}")
        stop_end = stop + len(end_text)
        assistant |= (starts >= at) & (starts < stop_end)
        turn_end |= (starts >= stop) & (starts < stop_end)
        cursor = stop_end
    return Row(ids, assistant, turn_end)


def rows_for(tok, system: bool):
    fmt = chat_format(tok)
    return [build_row(tok, conv, system, fmt) for conv in CONVERSATIONS]


def batch(rows: list[Row], *, full_row: int | None = None, unstopped=()) -> dict:
    labels = []
    for i, r in enumerate(rows):
        ids = np.asarray(r.input_ids)
        keep = np.ones(ids.size, dtype=bool) if i == full_row else r.assistant.copy()
        if i in unstopped:
            keep &= ~r.turn_end
        labels.append(np.where(keep, ids, -100).tolist())
    return {"input_ids": [r.input_ids for r in rows], "labels": labels}


def findings(report) -> dict[str, object]:
    return {f.code: f for f in report.findings}


# -- defects the sweep found, each shown without the cache -------------------------------------

# Apriel 1.5's template (unsloth's copy, in the sdist) closes an assistant turn with
# `<|end|>\n` + EOS but a system or user turn with `<|end|>\n` alone.
APRIEL = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{{- '<|' + message['role'] + '|>\n' + message['content'] + '\n<|end|>\n' }}"
    "{%- if message['role'] == 'assistant' %}{{- eos_token }}{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|assistant|>\n' }}{%- endif %}"
)


def _marker_tokenizer(template: str, markers: list[str]):
    """The tiny BPE of labellint.testing with `markers` as special tokens, and `template`."""
    from tokenizers import AddedToken, Tokenizer
    from transformers import PreTrainedTokenizerFast

    from labellint.testing import _trained

    tok = Tokenizer.from_str(_trained())
    tok.add_special_tokens([AddedToken(m, special=True, normalized=False) for m in markers])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>", pad_token="<pad>", chat_template=template)


def test_a_header_after_leftovers_of_the_previous_turn_is_still_read():
    pytest.importorskip("transformers")
    tok = _marker_tokenizer(APRIEL, ["<|system|>", "<|user|>", "<|assistant|>", "<|end|>"])
    fmt = chat_format(tok)
    assert set(fmt.roles) == {"system", "user", "assistant"}
    assert tok.decode(list(fmt.core("user"))) == "<|user|>"
    assert tok.decode(list(fmt.turn_end)) == "<|end|>"
    rows = rows_for(tok, system=True)
    report = labellint.check(batch(rows, full_row=FULL_ROW), tokenizer=tok)
    assert [list(f.rows) for f in report.findings if f.code == "LL601"] == [[FULL_ROW]]


def test_an_eos_the_template_writes_after_every_answer_is_no_document_boundary():
    pytest.importorskip("transformers")
    tok = _marker_tokenizer(APRIEL, ["<|system|>", "<|user|>", "<|assistant|>", "<|end|>"])
    rows = rows_for(tok, system=True)
    report = labellint.check(batch(rows), tokenizer=tok)
    assert not [f.code for f in report.findings if f.severity == "error"]
    # two conversations in one row are still two documents: the template starts each with BOS
    two = batch(rows)
    packed = {k: [v[0] + v[1]] + v[2:] for k, v in two.items()}
    report = labellint.check(packed, tokenizer=tok)
    assert [list(f.rows) for f in report.findings if f.code == "LL501"] == [[0]]


# DeepSeek's R1 distill of Llama 3 (in the sdist): Llama 3's vocabulary, its own markers.
DEEPSEEK = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'user' %}{{- '<｜User｜>' + message['content'] }}"
    "{%- elif message['role'] == 'assistant' %}"
    "{{- '<｜Assistant｜>' + message['content'] + '<｜end▁of▁sentence｜>' }}"
    "{%- endif %}{%- endfor %}"
)


def test_a_template_that_writes_other_markers_is_not_read_as_its_vocabularys_family():
    pytest.importorskip("transformers")
    tok = _marker_tokenizer(DEEPSEEK, ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
                                       "<｜User｜>", "<｜Assistant｜>", "<｜end▁of▁sentence｜>"])
    fmt = chat_format(tok)
    assert fmt is None or not fmt.headers  # the template's turns are not Llama 3's headers
    # so the chat rules say they cannot judge the turns, instead of finding none to judge
    conv = [{"role": "user", "content": "Name a colour."},
            {"role": "assistant", "content": "Blue."}]
    ids = tok.apply_chat_template(conv, tokenize=True, return_dict=True)["input_ids"]
    report = labellint.check({"input_ids": [ids], "labels": [ids]}, tokenizer=tok)
    skipped = {code for s in report.sources for code in s.skipped}
    assert {"LL601", "LL603"} <= skipped
    # without a template, the family's markers in the vocabulary are still the best guess
    tok.chat_template = None
    assert chat_format(tok).origin == "known family"


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vocab_tokenizers(real_tokenizers):
    """One tokenizer per vocabulary; each check sets the template it sweeps, and the variants'
    own templates are put back for the other modules."""
    toks = {v: real_tokenizers[name].tokenizer for v, name in VARIANT.items()}
    own = {v: tok.chat_template for v, tok in toks.items()}
    yield toks
    for v, tok in toks.items():
        tok.chat_template = own[v]


@pytest.fixture(scope="module")
def sweep(vocab_tokenizers):
    """The sweep table, one entry per template in the sdist, printed for the test log."""
    import real_tokenizers as rt

    table = []
    for path in sorted((rt.models_dir() / "templates").glob("*.jinja")):
        template = path.read_text(encoding="utf-8")
        entry = Entry(path.name)
        for vocab, tok in vocab_tokenizers.items():
            system, why = qualify(tok, template)
            if why:
                entry.notes[vocab] = why
            else:
                entry.vocabs.append(vocab)
                entry.notes[vocab] = "qualifies" + ("" if system else " (no system turn)")
        if not entry.vocabs:
            by_reason: dict[str, list[str]] = {}
            for vocab, why in entry.notes.items():
                by_reason.setdefault(why, []).append(vocab)
            entry.reason = "; ".join(f"{why} [{', '.join(v)}]" for why, v in by_reason.items())
        table.append((entry, template))
    print("\ntemplate sweep:")
    for entry, _ in table:
        print(f"  {entry.template}: "
              + (", ".join(f"{v}: {entry.notes[v]}" for v in entry.vocabs) or
                 f"qualifies for none: {entry.reason}"))
    return table


@pytest.fixture(scope="module")
def cases(sweep, vocab_tokenizers):
    """Each qualifying (template, vocabulary): its name, template and correct rows, built once."""
    out = []
    for entry, template in sweep:
        for vocab in entry.vocabs:
            tok = vocab_tokenizers[vocab]
            tok.chat_template = template
            system = "no system" not in entry.notes[vocab]
            out.append((f"{entry.template} / {vocab}", vocab, template, rows_for(tok, system)))
    return out


def pairs(cases, vocab_tokenizers):
    """The cases, each with its vocabulary's tokenizer set to its template."""
    for name, vocab, template, rows in cases:
        tok = vocab_tokenizers[vocab]
        tok.chat_template = template
        yield name, tok, rows


# -- the sweep ---------------------------------------------------------------------------------


def test_every_template_in_the_sdist_is_judged_with_a_reason(sweep):
    import real_tokenizers as rt

    names = {p.name for p in (rt.models_dir() / "templates").glob("*.jinja")}
    assert names == {e.template for e, _ in sweep}
    assert len(names) >= 60  # the sdist holds about 75; far fewer means extraction went wrong
    for entry, _ in sweep:
        assert entry.vocabs or entry.reason, entry.template
    # each real model's own template qualifies for its own vocabulary
    qualified = {(e.template, v) for e, _ in sweep for v in e.vocabs}
    for spec in rt.SPECS.values():
        if spec.template:
            assert (spec.template, spec.vocab) in qualified, spec.name


def test_correct_assistant_only_rows_are_clean_under_every_qualifying_template(
        cases, vocab_tokenizers):
    wrong = []
    for name, tok, rows in pairs(cases, vocab_tokenizers):
        report = labellint.check(batch(rows), tokenizer=tok)
        bad = [f"{f.code} rows {list(f.rows)}" for f in report.findings
               if f.code in CHAT_RULES or f.severity == "error"]
        if bad:
            wrong.append(f"{name}: {', '.join(bad)}")
    assert not wrong, "\n".join(wrong)


def test_a_row_that_trains_its_prompt_turns_is_ll601_under_every_qualifying_template(
        cases, vocab_tokenizers):
    wrong = []
    for name, tok, rows in pairs(cases, vocab_tokenizers):
        report = labellint.check(batch(rows, full_row=FULL_ROW), tokenizer=tok)
        got = findings(report).get("LL601")
        if got is None or list(got.rows) != [FULL_ROW]:
            wrong.append(f"{name}: LL601 rows {got and list(got.rows)}, codes "
                         f"{sorted(findings(report))}")
    assert not wrong, "\n".join(wrong)


def test_answers_with_a_masked_end_of_turn_are_ll603_under_every_qualifying_template(
        cases, vocab_tokenizers):
    wrong = []
    for name, tok, rows in pairs(cases, vocab_tokenizers):
        # each assistant turn's end is found
        assert all(r.turn_end.sum() == 2 * len(chat_format(tok).turn_end) for r in rows), name
        report = labellint.check(batch(rows, unstopped=UNSTOPPED_ROWS), tokenizer=tok)
        got = findings(report).get("LL603")
        if got is None or list(got.rows) != list(UNSTOPPED_ROWS):
            wrong.append(f"{name}: LL603 rows {got and list(got.rows)}, codes "
                         f"{sorted(findings(report))}")
    assert not wrong, "\n".join(wrong)
