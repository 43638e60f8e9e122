"""Properties of the chat rules over generated conversations: rows built with the template's own
assistant masks are clean in both families, and a defect planted in one row is found at exactly
that row, by exactly the rule for it."""

import pytest

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import labellint  # noqa: E402
from labellint.chat_format import chat_format  # noqa: E402
from labellint.testing import CORPUS, chatml_tokenizer, llama3_tokenizer  # noqa: E402

TOKENIZERS = {"chatml": chatml_tokenizer(), "llama3": llama3_tokenizer()}
FORMATS = {name: chat_format(tok) for name, tok in TOKENIZERS.items()}
WORDS = sorted({w for line in CORPUS for w in line.split()})
CHAT = {"LL403", "LL407", "LL601", "LL602", "LL603"}

text = st.lists(st.sampled_from(WORDS), min_size=1, max_size=6).map(" ".join)


@st.composite
def conversation(draw):
    turns = draw(st.integers(1, 3))
    messages = [{"role": "system", "content": draw(text)}] if draw(st.booleans()) else []
    for _ in range(turns):
        messages += [{"role": "user", "content": draw(text)},
                     {"role": "assistant", "content": draw(text)}]
    return messages


def masked(tok, conv):
    out = tok.apply_chat_template(conv, return_assistant_tokens_mask=True, return_dict=True)
    ids = list(out["input_ids"])
    return {"input_ids": ids, "labels": [i if m else -100 for i, m in
                                         zip(ids, out["assistant_masks"])]}


def plant(kind, row, fmt):
    ids, labels = row["input_ids"], row["labels"]
    if kind == "LL601":  # the whole conversation trained
        return dict(row, labels=list(ids))
    if kind == "LL603":  # every end of turn masked
        end = fmt.turn_end[0]
        return dict(row, labels=[-100 if t == end else lab for t, lab in zip(ids, labels)])
    core = list(fmt.core("assistant"))  # LL602: the first assistant header trained
    at = next(i for i in range(len(ids)) if ids[i:i + len(core)] == core)
    labels = list(labels)
    labels[at:at + len(core)] = core
    return dict(row, labels=labels)


SETTINGS = settings(max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(family=st.sampled_from(sorted(TOKENIZERS)),
       convs=st.lists(conversation(), min_size=1, max_size=6))
def test_template_masked_conversations_are_clean(family, convs):
    tok = TOKENIZERS[family]
    report = labellint.check([masked(tok, c) for c in convs], tokenizer=tok)
    assert not {f.code for f in report.findings} & CHAT, str(report)


@SETTINGS
@given(family=st.sampled_from(sorted(TOKENIZERS)),
       convs=st.lists(conversation(), min_size=3, max_size=6),
       kind=st.sampled_from(["LL601", "LL602", "LL603"]), data=st.data())
def test_a_planted_defect_is_found_at_its_row(family, convs, kind, data):
    tok = TOKENIZERS[family]
    rows = [masked(tok, c) for c in convs]
    at = data.draw(st.integers(0, len(rows) - 1))
    rows[at] = plant(kind, rows[at], FORMATS[family])
    report = labellint.check(rows, tokenizer=tok)
    found = [f for f in report.findings if f.code in CHAT]
    assert [(f.code, f.rows) for f in found] == [(kind, (at,))], str(report)
