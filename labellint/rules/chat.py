"""LL407, LL6xx: chat rows whose template markers or trained turns are wrong.

Turns come from the role headers in `facts.chat` (found from the tokenizer's chat template), so
these rules need a tokenizer with a template, or a `labellint.ChatFormat` given as `chat`.
A prompt turn is any role but the assistant's (system, user, and whatever else the template
names); a turn's content is what follows its header, up to the next header.
"""

import numpy as np

from ..batch import Batch
from ..chat_format import NO_TEMPLATE, TAG_LIKE
from ..registry import Edit, repair, rule, skip
from ..turns import masking, prompt_rows, spans

NO_HEADERS = "the chat template's role headers are unknown (give a tokenizer with a chat template)"
FULL_SEQUENCE = "assistant_only_loss=False: whole conversations are trained on purpose"


def _no_headers(b: Batch):
    """Why assistant turns cannot be found, or None when the role headers are known.

    The reason names what was given: a tokenizer whose template labellint could not read
    (Llama 2's and Mistral's `[INST]` form has no role headers) is not a missing tokenizer.
    """
    chat = b.facts.chat
    if chat is not None and chat.headers:
        return None
    if chat is not None and chat.origin == NO_TEMPLATE:
        # A tokenizer without a chat template: the data is not chat-formatted.
        return skip("the tokenizer has no chat template", by_design=True)
    if chat is not None and chat.origin == "user":
        return skip("the chat format given has no role headers")
    if chat is not None:
        # The origin says why the template was not read, as the facts line shows it.
        return skip(f"{chat.origin}, so assistant turns cannot be found")
    if "tokenizer" in b.facts.origin.values():
        return skip("the tokenizer's chat template has no role headers labellint can read")
    return skip(NO_HEADERS)


def _chat(b: Batch):
    if (why := _no_headers(b)) is not None:
        return why
    if b.facts.assistant_only_loss is False:
        return skip(FULL_SEQUENCE, by_design=True)
    return None


@rule(
    "LL407", "special-token-split", severity="warning", per="row",
    message="special-token text written as several ordinary tokens in {rows} rows (checked on "
            "up to {sample_rows} decoded rows per chunk)",
    fix="encode template text with the tokenizer that registers its markers "
        "(tokenizer.add_special_tokens, then model.resize_token_embeddings), and never with "
        "split_special_tokens=True",
)
def special_token_split(b: Batch, *, sample_rows: int = 32):
    """Special-token text (`<|im_end|>`, `</s>`) in a row as several ordinary tokens, not one id."""
    chat = b.facts.chat
    if chat is None or chat.decode is None or not chat.special:
        return skip("needs a tokenizer to decode rows with")
    out = np.zeros(b.n_rows, dtype=bool)
    rows = np.flatnonzero(b.real_lengths > 0)
    if rows.size > sample_rows:  # evenly spread over the chunk, first and last row included
        rows = rows[np.unique(np.linspace(0, rows.size - 1, sample_rows).round().astype(int))]
    if chat.split_suspects is not None:
        rows = rows[_with_suspects(b, rows, chat.split_suspects)]
    # Decoding needs the tokenizer, one row at a time: a bounded loop over at most
    # `sample_rows` rows per chunk, never over tokens.
    for r in rows:
        ids = b.input_ids[b.starts[r]: b.ends[r]][b.real[b.starts[r]: b.ends[r]]]
        out[r] = _has_split(chat.special, chat.decode(ids.tolist()), ids)
    return out


def _with_suspects(b: Batch, rows: np.ndarray, suspects) -> np.ndarray:
    """Which of `rows` hold an id that could start a split special text (the others decode
    to text that holds none: see `chat_format.SplitSuspects`)."""
    index, owner = spans(b.starts[rows], b.ends[rows])
    keep = b.real_at(index)
    ids = b.input_ids[index[keep]]
    inside = (ids >= 0) & (ids < suspects.state.size)  # decode drops the others
    hit = np.zeros(ids.size, dtype=bool)
    hit[inside] = suspects(ids[inside])
    return np.bincount(owner[keep][hit], minlength=rows.size) > 0


def _has_split(special, text: str, ids: np.ndarray) -> bool:
    """Whether the decoded text holds a special text more often than the row holds its id."""
    edges = text.strip()
    for marker, token in special:
        seen = text.count(marker)
        if seen == 0:
            continue
        if TAG_LIKE.match(marker) and not (edges.startswith(marker) or edges.endswith(marker)):
            continue  # `<s>` inside text is strikethrough HTML; a special token sits at the edge
        as_one = 0 if token is None else int(np.count_nonzero(ids == token))
        if seen > as_one:
            return True
    return False


@rule(
    "LL601", "supervised-prompt-turn", severity="warning", per="token", requires=("labels",),
    message="system/user turns (their content or role header) trained in {rows} rows "
            "({tokens} tokens), while prompt turns are masked elsewhere",
    fix="mask every non-assistant turn, role header included (SFTConfig(assistant_only_loss="
        "True) with a {{% generation %}} template, or an instruction_template as well as a "
        "response_template); end each trained span at the answer's end-of-turn token, not at "
        "the end of a render of messages[:i+1] (Qwen3's template is not prefix-preserving); "
        "pass assistant_only_loss=False if training on whole conversations is meant",
)
def supervised_prompt_turn(b: Batch):
    """Trained tokens (header or content) in a system or user turn of prompt-masked data."""
    if (why := _chat(b)) is not None:
        return why
    t, info = masking(b)
    rows = prompt_rows(b)
    # Evidence that prompts are meant to be masked: the data says so (assistant_only_loss,
    # given or inferred from most rows), or this row masks another turn of the same role.
    evidence = rows["mixed"] | bool(b.facts.assistant_only_loss)
    # A trained header is a trained turn: the model learns to open the user's turn itself.
    bad_turn = t.prompt & (info["trained"] | info["header_trained"]) & evidence[t.row]
    # The trained tokens of those turns: their header's, and their real content's.
    return t.span_mask(bad_turn, t.start, t.end, lambda index, turn: b.trained[index] & (
        (index < t.header_end[turn]) | b.real_at(index)))


@rule(
    "LL602", "supervised-role-header", severity="warning", per="token", requires=("labels",),
    message="the assistant header is trained in {rows} rows ({tokens} tokens), though their "
            "prompt turns are masked",
    fix="start the loss after the whole assistant header: use the template's "
        "{{% generation %}} masks, or a response_template that includes the full header",
)
def supervised_role_header(b: Batch):
    """The assistant role header itself (`<|im_start|>assistant`) trained in a masked chat row."""
    if (why := _chat(b)) is not None:
        return why
    t, info = masking(b)
    rows = prompt_rows(b)
    # Rows whose prompt turns are all masked: masking is on, so a trained header is its slip.
    # Rows that train prompt turns are LL601's; the header's trailing newline is content-like
    # (TRL's Qwen2.5 training template trains it) and not judged.
    masked = (rows["prompts"] > 0) & (rows["trained"] == 0)
    header_turn = t.assistant & masked[t.row] & info["header_trained"]
    return t.span_mask(header_turn, t.start, t.core_end, lambda index, _: b.trained[index])


@rule(
    "LL603", "end-of-turn-not-supervised", severity="error", per="token", requires=("labels",),
    message="assistant turns end without a trained end-of-turn token in {rows} rows: the model "
            "does not learn to stop",
    fix="put the end-of-turn token inside {{% generation %}} (or keep its label when masking); "
        "with pad_token == the end-of-turn token, mask padding by attention_mask, not by id",
)
def end_of_turn_not_supervised(b: Batch, *, every_turn: bool = False):
    """Trained assistant turns whose end-of-turn token (`<|im_end|>`, `<|eot_id|>`) is masked."""
    if (why := _no_headers(b)) is not None:
        return why
    t, info = masking(b)
    closed = t.assistant & (t.stop >= 0)
    stop_trained = np.zeros(t.n, dtype=bool)
    stop_trained[closed] = b.trained[t.stop[closed]]
    missed = closed & info["trained"] & ~stop_trained
    if not every_turn:
        # A row that trains some turn's end teaches stopping (Axolotl's train_on_eos="last").
        stops_somewhere = t.per_row(closed & stop_trained, b.n_rows) > 0
        missed &= ~stops_somewhere[t.row]
    out = np.zeros(b.n_tokens, dtype=bool)
    out[t.stop[missed]] = True
    return out



@repair(end_of_turn_not_supervised, safe=False, does="gives each masked end-of-turn token of a "
        "trained assistant turn its label (the token itself)")
def supervise_turn_ends(b: Batch, hit: np.ndarray) -> Edit:
    from .special_tokens import supervise_stops

    return supervise_stops(b, np.flatnonzero(hit))
