"""The chat fast paths equal their straightforward definitions, on generated conversations.

Turns are found from turn arrays (binary searches over the turns' edges, spans filled only
for the turns a rule names) and LL407 decodes only the rows that could hold a split special
text. Each is compared here with a per-row, per-token Python definition of the same thing, on
rows rendered by the ChatML and Llama 3 templates: multi-turn, with and without a system prompt,
truncated, without any turn, packed two to a row, padded, with labels masked at random.
"""

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from labellint.batch import Batch  # noqa: E402
from labellint.chat_format import chat_format  # noqa: E402
from labellint.facts import Facts  # noqa: E402
from labellint.rules.chat import (  # noqa: E402
    _has_split,
    end_of_turn_not_supervised,
    supervised_prompt_turn,
    supervised_role_header,
)
from labellint.testing import CORPUS, chatml_tokenizer, llama3_tokenizer  # noqa: E402
from labellint.turns import (  # noqa: E402
    answer_unfinished,
    masking,
    prompt_rows,
    rows_with_turn_end,
    turns_of,
)

TOKENIZERS = {"chatml": chatml_tokenizer(), "llama3": llama3_tokenizer()}
FORMATS = {name: chat_format(tok) for name, tok in TOKENIZERS.items()}
WORDS = sorted({w for line in CORPUS for w in line.split()})
SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

text = st.lists(st.sampled_from(WORDS), min_size=0, max_size=5).map(" ".join)


@st.composite
def conversation(draw):
    messages = [{"role": "system", "content": draw(text)}] if draw(st.booleans()) else []
    for _ in range(draw(st.integers(1, 3))):
        messages += [{"role": "user", "content": draw(text)},
                     {"role": "assistant", "content": draw(text)}]
    return messages


@st.composite
def chat_rows(draw, family):
    """Rows of one family: rendered conversations, cut, packed, plain text or padded, with
    labels from the assistant masks and then flipped at random."""
    tok = TOKENIZERS[family]
    rows, labels, attention = [], [], []
    for _ in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(["whole", "cut", "packed", "plain", "padded"]))
        ids, mask = [], []
        for _ in range(2 if kind == "packed" else 1):
            out = tok.apply_chat_template(draw(conversation()), return_dict=True,
                                          return_assistant_tokens_mask=True)
            ids += list(out["input_ids"])
            mask += list(out["assistant_masks"])
        if kind == "cut":
            cut = draw(st.integers(1, len(ids)))
            ids, mask = ids[:cut], mask[:cut]
        if kind == "plain":
            ids = tok(draw(text) + " end", add_special_tokens=False)["input_ids"]
            mask = [1] * len(ids)
        flips = draw(st.lists(st.integers(0, max(len(ids) - 1, 0)), max_size=6))
        lab = [i if m else -100 for i, m in zip(ids, mask)]
        for at in flips:
            if at < len(ids):
                lab[at] = ids[at] if lab[at] == -100 else -100
        att = [1] * len(ids)
        if kind == "padded":
            n = draw(st.integers(1, 4))
            ids, lab, att = ids + [tok.pad_token_id] * n, lab + [-100] * n, att + [0] * n
        rows.append(ids), labels.append(lab), attention.append(att)
    facts = Facts(chat=FORMATS[family], eos_id=tok.eos_token_id, pad_id=tok.pad_token_id,
                  end_of_turn_ids=FORMATS[family].turn_end, assistant_only_loss=True)
    return Batch.from_dict({"input_ids": rows, "labels": labels, "attention_mask": attention},
                           facts)


def reference(b: Batch) -> dict:
    """Turns and their masking read one row and one position at a time."""
    fmt = b.facts.chat
    ids, real, trained = b.input_ids.tolist(), b.real.tolist(), b.trained.tolist()
    ends = set(fmt.turn_end if len(fmt.turn_end) == 1 else b.facts.stop_ids)
    turns = []
    for r in range(b.n_rows):
        lo, hi = int(b.starts[r]), int(b.ends[r])
        starts = []
        for p in range(lo, hi):
            for k, role in enumerate(fmt.roles):
                core, full = fmt.core(role), dict(fmt.headers)[role]
                if p + len(core) <= hi and ids[p: p + len(core)] == list(core):
                    full_len = len(full) if p + len(full) <= hi and \
                        ids[p: p + len(full)] == list(full) else len(core)
                    starts.append((p, k, full_len, len(core)))
                    break
        for i, (p, k, full_len, core_len) in enumerate(starts):
            end = starts[i + 1][0] if i + 1 < len(starts) else hi
            header = range(p, min(p + full_len, end))
            core = range(p, min(p + core_len, end))
            content = [q for q in range(p, end) if q not in header and real[q]]
            stop = next((q for q in content if ids[q] in ends), -1)
            body = [q for q in content if q != stop]
            turns.append({"start": p, "end": end, "row": r, "role": k, "stop": stop,
                          "header": list(header), "core": list(core), "content": content,
                          "has_content": bool(body),
                          "trained": any(trained[q] for q in body),
                          "header_trained": any(trained[q] for q in core)})
    return {"turns": turns}


def drawn(data, family) -> tuple[Batch, list[dict]]:
    """A drawn batch of chat rows and its turns by the per-position definition."""
    b = data.draw(chat_rows(family))
    return b, reference(b)["turns"]


def _per_token(b: Batch, turns: list[dict], key: str) -> np.ndarray:
    out = np.zeros(b.n_tokens, dtype=bool)
    for t in turns:
        out[t[key]] = True
    return out


@SETTINGS
@given(data=st.data(), family=st.sampled_from(sorted(TOKENIZERS)))
def test_turns_and_masking_equal_the_per_position_definition(data, family):
    b, ref = drawn(data, family)
    t = turns_of(b)
    assert t.n == len(ref)
    for name in ("start", "end", "row", "role", "stop"):
        assert getattr(t, name).tolist() == [x[name] for x in ref], name
    turn = np.full(b.n_tokens, -1)
    for i, x in enumerate(ref):
        turn[x["start"]: x["end"]] = i
    assert t.turn.tolist() == turn.tolist()
    for view, key in (("in_header", "header"), ("in_core", "core"), ("content", "content")):
        assert getattr(t, view).tolist() == _per_token(b, ref, key).tolist(), view
    _, info = masking(b)
    for key in ("has_content", "trained", "header_trained"):
        assert info[key].tolist() == [x[key] for x in ref], key
    per_turn = np.bincount(turn[b.trained & (turn >= 0)], minlength=len(ref))
    assert t.per_turn(b.trained).tolist() == per_turn.tolist()

    # The rows' answers, from the per-token views.
    assistant = fmt_role(b)
    closed = [x["role"] == assistant and x["stop"] >= 0 for x in ref]
    rows_closed = np.zeros(b.n_rows, dtype=bool)
    rows_closed[[x["row"] for x, c in zip(ref, closed) if c]] = True
    assert rows_with_turn_end(b).tolist() == rows_closed.tolist()
    unfinished = np.zeros(b.n_rows, dtype=bool)
    for r in range(b.n_rows):
        last = int(b.last_real_index[r])
        if last < 0 or turn[last] < 0:
            continue
        x = ref[turn[last]]
        unfinished[r] = x["role"] != assistant or last in x["header"] or not x["content"]
    assert answer_unfinished(b).tolist() == unfinished.tolist()


def fmt_role(b: Batch) -> int:
    return b.facts.chat.roles.index("assistant")


@SETTINGS
@given(data=st.data(), family=st.sampled_from(sorted(TOKENIZERS)))
def test_chat_rules_equal_their_per_token_definitions(data, family):
    b, ref = drawn(data, family)
    assistant = fmt_role(b)
    rows = prompt_rows(b)
    trained = b.trained
    # LL601 (assistant_only_loss given): the trained header and content tokens of prompt
    # turns with a trained part.
    want = np.zeros(b.n_tokens, dtype=bool)
    for x in ref:
        if x["role"] != assistant and (x["trained"] or x["header_trained"]):
            for q in x["header"] + x["content"]:
                want[q] = trained[q]
    assert supervised_prompt_turn(b).tolist() == want.tolist()
    # LL602: the trained core of assistant headers in rows whose prompt turns are all masked.
    masked = (rows["prompts"] > 0) & (rows["trained"] == 0)
    want = np.zeros(b.n_tokens, dtype=bool)
    for x in ref:
        if x["role"] == assistant and masked[x["row"]]:
            for q in x["core"]:
                want[q] = trained[q]
    assert supervised_role_header(b).tolist() == want.tolist()
    # LL603: closed, trained answers whose stop is masked, in rows that train no stop.
    stops_row = {x["row"] for x in ref
                 if x["role"] == assistant and x["stop"] >= 0 and trained[x["stop"]]}
    want = np.zeros(b.n_tokens, dtype=bool)
    for x in ref:
        if x["role"] == assistant and x["stop"] >= 0 and x["trained"] and \
                not trained[x["stop"]] and x["row"] not in stops_row:
            want[x["stop"]] = True
    assert end_of_turn_not_supervised(b).tolist() == want.tolist()


# -- LL407: rows without a suspect id hold no split ------------------------------------------


@st.composite
def split_rows(draw, family):
    """Ids that may write special texts as ordinary tokens: template text encoded with
    split_special_tokens, pieces of it, and ids drawn from the whole vocabulary."""
    tok = TOKENIZERS[family]
    conv = draw(conversation())
    rendered = tok.apply_chat_template(conv, tokenize=False)
    split = tok(rendered, add_special_tokens=False, split_special_tokens=True)["input_ids"]
    whole = tok(rendered, add_special_tokens=False)["input_ids"]
    pick = draw(st.sampled_from(["split", "whole", "random", "mixed"]))
    if pick == "split":
        return split
    if pick == "whole":
        return whole
    randoms = draw(st.lists(st.integers(0, len(tok) - 1), min_size=1, max_size=40))
    if pick == "random":
        return randoms
    at = draw(st.integers(0, len(whole)))
    lo = draw(st.integers(0, len(split)))
    return whole[:at] + split[lo: lo + draw(st.integers(0, 12))] + randoms + whole[at:]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), family=st.sampled_from(sorted(TOKENIZERS)))
def test_rows_without_suspects_decode_to_no_split(data, family):
    fmt = FORMATS[family]
    ids = np.asarray(data.draw(split_rows(family)), dtype=np.int64)
    suspects = fmt.split_suspects
    assert suspects is not None
    if not suspects(ids).any():
        assert not _has_split(fmt.special, fmt.decode(ids.tolist()), ids)


def test_the_real_qwen_tokenizer_gets_the_fast_path():
    real_tokenizers = pytest.importorskip("real_tokenizers")
    try:
        tok = real_tokenizers.load("qwen2.5-instruct")
    except real_tokenizers.RegistryUnreachable:
        pytest.skip("the real tokenizers cannot be downloaded")
    fmt = chat_format(tok)
    text = tok.apply_chat_template([{"role": "user", "content": "hi"},
                                    {"role": "assistant", "content": "hello"}], tokenize=False)
    whole = np.asarray(tok(text, add_special_tokens=False)["input_ids"])
    split = np.asarray(tok(text, add_special_tokens=False, split_special_tokens=True)
                       ["input_ids"])
    assert not fmt.split_suspects(whole).any()
    assert fmt.split_suspects(split).any()
    assert _has_split(fmt.special, fmt.decode(split.tolist()), split)
