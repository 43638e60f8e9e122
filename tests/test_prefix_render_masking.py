"""Masking chat rows by rendering message prefixes, under Qwen3's templates and a real tokenizer.

A common hand-written mask trains, for each answer, the characters between the render of
`messages[:i]` with `add_generation_prompt=True` and the render of `messages[:i + 1]`. Qwen3 and
Qwen3.5 write `<think>\n\n</think>\n\n` before the last answer only, so that second render is
19 characters longer than the answer's place in the whole conversation: every trained span runs
past the answer's `<|im_end|>` into the next user turn's header.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

import labellint

TEMPLATES = ["Qwen-Qwen3-0.6B.jinja", "Qwen3.5-4B.jinja"]
WORDS = "the quick brown fox jumps over lazy dog paris capital france ocean waves".split()
N_ROWS = 24


def conversations(n: int = N_ROWS, seed: int = 0) -> list[list[dict[str, str]]]:
    r = random.Random(seed)

    def sentence() -> str:
        return " ".join(r.choice(WORDS) for _ in range(r.randint(4, 12))).capitalize() + "."

    out = []
    for i in range(n):
        system = [{"role": "system", "content": "Answer briefly."}] if i % 3 == 0 else []
        out.append(system + [
            {"role": "user", "content": sentence()[:-1] + "?"},
            {"role": "assistant", "content": sentence()},
            {"role": "user", "content": sentence()[:-1] + "?"},
            {"role": "assistant", "content": sentence()},
        ])
    return out


def _encode(tok, msgs):
    text = tok.apply_chat_template(msgs, tokenize=False)
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    return text, enc["input_ids"], np.asarray(enc["offset_mapping"])


def prefix_render_rows(tok) -> list[dict]:
    """Labels on the text between the prefix render with a generation prompt and the next one."""
    rows = []
    for msgs in conversations():
        _, ids, offsets = _encode(tok, msgs)
        spans = [(len(tok.apply_chat_template(msgs[:k], tokenize=False,
                                              add_generation_prompt=True)),
                  len(tok.apply_chat_template(msgs[:k + 1], tokenize=False)))
                 for k, m in enumerate(msgs) if m["role"] == "assistant"]
        o0, o1 = offsets[:, 0], offsets[:, 1]
        keep = np.zeros(len(ids), dtype=bool)
        for a, b in spans:
            keep |= (a <= o0) & (o1 <= b) & (o1 > o0)
        rows.append({"input_ids": ids, "labels": np.where(keep, ids, -100).tolist()})
    return rows


def content_rows(tok) -> list[dict]:
    """Labels on each answer's content and the `<|im_end|>` that closes it."""
    rows = []
    for msgs in conversations():
        text, ids, offsets = _encode(tok, msgs)
        keep = np.zeros(len(ids), dtype=bool)
        cursor = 0
        for m in msgs:
            at = text.index(m["content"], cursor)
            cursor = at + len(m["content"])
            if m["role"] == "assistant":
                stop = text.index("<|im_end|>", cursor) + len("<|im_end|>")
                keep |= (offsets[:, 0] >= at) & (offsets[:, 0] < stop)
        rows.append({"input_ids": ids, "labels": np.where(keep, ids, -100).tolist()})
    return rows


def _trained_headers(tok, rows) -> int:
    """Rows in which some `<|im_start|>user` is trained."""
    start, user = tok.convert_tokens_to_ids("<|im_start|>"), tok.encode("user")[0]
    hit = 0
    for r in rows:
        ids, labels = np.asarray(r["input_ids"]), np.asarray(r["labels"])
        at = np.flatnonzero((ids[:-1] == start) & (ids[1:] == user))
        hit += bool((labels[at] != -100).any())
    return hit


@pytest.fixture(params=TEMPLATES)
def qwen3(request, real_tokenizers):
    import real_tokenizers as rt

    tok = real_tokenizers["qwen3.5-instruct"].tokenizer
    own = tok.chat_template
    tok.chat_template = (rt.models_dir() / "templates" / request.param).read_text()
    yield tok
    tok.chat_template = own  # the fixture's tokenizers are shared by the other modules


def test_prefix_render_masking_that_trains_the_next_user_header_is_ll601_in_every_row(qwen3):
    rows = prefix_render_rows(qwen3)
    assert _trained_headers(qwen3, rows) == N_ROWS  # the producing code's slip, in every row
    report = labellint.check(rows, tokenizer=qwen3)
    # the only trained prompt tokens are headers, so the rows still read as prompt-masked data
    assert report.sources[0].facts.assistant_only_loss is True
    found = {f.code: f for f in report.findings}
    assert "LL601" in found, str(report)
    assert found["LL601"].count_rows == N_ROWS
    assert found["LL601"].rows == tuple(range(len(found["LL601"].rows)))  # the first rows shown
    assert "header" in found["LL601"].message


def test_answers_masked_with_their_turn_end_under_qwen3_templates_are_clean(qwen3):
    rows = content_rows(qwen3)
    assert _trained_headers(qwen3, rows) == 0
    report = labellint.check(rows, tokenizer=qwen3)
    assert report.sources[0].facts.assistant_only_loss is True
    assert not [f.code for f in report.findings if f.code.startswith("LL6")], str(report)


def test_whole_conversations_trained_under_qwen3_templates_are_not_ll601(qwen3):
    rows = [{"input_ids": r["input_ids"], "labels": list(r["input_ids"])}
            for r in content_rows(qwen3)]
    report = labellint.check(rows, tokenizer=qwen3)
    assert report.sources[0].facts.assistant_only_loss is False
    assert "LL601" not in {f.code for f in report.findings}
