"""LL3xx/LL5xx: packed rows whose sequences are not isolated from each other.

A packed sequence starts where position_ids go back to the row's first value (see
`labellint.sequences.sequence_starts`). Packing without position_ids shows only in the tokens:
a document boundary inside a row, which `document_starts` looks for.
"""

import numpy as np

from ..batch import Batch
from ..ragged import union_sorted
from ..registry import Edit, repair, rule, skip
from ..sequences import (
    packed,
    position_breaks,
    position_restarts,
    sequence_first,
    sequence_starts,
)
from ..turns import turns_of


def stream_blocks(b: Batch) -> np.ndarray:
    """Rows cut at max_length from a token stream: nothing real is masked from the loss.

    A chat row (role headers found in it) trained whole and cut at max_length is a cut
    conversation, not a block of a stream: its cut answer is truncated-target's to report.
    """
    if b.labels is None or not b.at_max_length.any():
        return b.at_max_length
    blocks = b.at_max_length & ~b.row_any(b.real & ~b.supervised)
    turns = turns_of(b) if blocks.any() else None
    if turns is not None and turns.n:
        blocks[turns.row] = False
    return blocks


def in_leading_run(b: Batch, index: np.ndarray, bos_at: np.ndarray) -> np.ndarray:
    """For BOS positions `index`: whether only BOS precede them in their sequence (a doubled
    BOS at a start is duplicate-bos's finding, not a boundary). `bos_at`: every BOS, sorted."""
    first = sequence_first(b, index)
    run = np.searchsorted(bos_at, index, side="right") - np.searchsorted(bos_at, first)
    return (first >= 0) & (run == index - first + 1)


def document_starts(b: Batch) -> np.ndarray:
    """Flat indices where a new document begins inside a row that nothing isolates it in.

    Evidence, at a real token after the row's first, in a row without restarting position_ids:
    - EOS then BOS: the tokenizer's own frame closes and opens again (unless the chat template
      writes BOS at every turn, as Llama-2's does);
    - EOS then more content, in a row whose chat turns end with another token (`<|im_end|>`
      with a base tokenizer's `<|endoftext|>` as EOS), so that EOS cannot be a turn's end;
    - in a fixed-length block cut from a token stream (run_clm's group_texts, TRL's wrapped
      packing, the old ConstantLengthDataset): a BOS after the block's start, or EOS then more.
    A lone EOS followed by more text in a variable-length row is not enough: Mistral, Zephyr and
    Llama-2 chat rows end every assistant turn with EOS.
    """
    cached = b.__dict__.get("_document_starts")  # LL402, LL406, LL409 and LL501 all ask
    if cached is None:
        cached = b.__dict__["_document_starts"] = _document_starts(b)
    return cached


def _document_starts(b: Batch) -> np.ndarray:
    f, ids = b.facts, b.input_ids
    eos = f.eos_id
    bos = f.bos_id if f.bos_id != eos else None  # GPT-2's one <|endoftext|> is EOS here
    none = np.zeros(0, dtype=np.int64)
    after_eos = none if eos is None else b.where_id(eos) + 1
    after_eos = after_eos[after_eos < ids.size]
    bos_at = none if bos is None else b.where_id(bos)
    index = union_sorted(after_eos, bos_at)
    if index.size == 0:
        return none
    index = index[b.inside_row(index) & ~packed(b)[b.rows_of(index)]]
    if f.bos_id is not None and f.bos_id == eos and index.size:
        # One id both opening and closing rows (GPT-2's `<|endoftext|>`, Qwen's GGUF vocab) with
        # a template writing `{{ bos_token }}`: the row's leading copies open it, and what
        # follows them is the document's own start, not the next document's.
        eos_at = b.where_id(eos)
        index = index[~in_leading_run(b, index - 1, eos_at)]
    rows = b.rows_of(index)
    is_bos = np.zeros(index.size, dtype=bool) if bos is None else ids[index] == bos
    prev_eos = (np.zeros(index.size, dtype=bool) if eos is None
                else (ids[index - 1] == eos) & (ids[index] != eos))
    found = is_bos & prev_eos if not f.bos_every_turn else np.zeros(index.size, dtype=bool)
    turn_ends = [t for t in f.end_of_turn_ids if t != eos]
    if turn_ends and prev_eos.any() and not f.eos_every_turn:
        chat_rows = b.row_any(np.isin(ids, turn_ends) & b.real)
        found |= prev_eos & chat_rows[rows]
    in_stream = stream_blocks(b)[rows]
    if in_stream.any():
        leading = in_leading_run(b, index, bos_at) & is_bos
        # A chat row trained whole and cut at max_length looks like a stream block, but an EOS
        # that is the template's turn end (<|im_end|>, <|eot_id|>) closes a turn, not a document.
        chat = f.chat
        turn_end = bool(chat is not None and chat.headers and eos in tuple(chat.turn_end)) or \
            bool(f.eos_every_turn)
        ends_document = np.zeros_like(prev_eos) if turn_end else prev_eos
        found |= in_stream & ((is_bos & ~leading) | ends_document)
    return index[found]


@rule(
    "LL304", "supervised-packing-boundary", severity="error", per="token",
    requires=("labels", "position_ids"),
    message="a label on the first token of a packed sequence in {rows} rows ({tokens} "
            "tokens): the model learns to predict one document's start from another's end",
    fix="set labels to {ignore_index} at the first token of every packed sequence, as "
        "DataCollatorWithFlattening and TRL's padding-free collator do",
)
def supervised_packing_boundary(b: Batch):
    """A packed sequence's first token carries a label, trained from the previous sequence."""
    starts = sequence_starts(b)
    if b.facts.label_shift == "dataset":
        # labels[t] is the target of t: the last token of a sequence must have none.
        starts = starts - 1
    # With the model's shift, labels[t] is predicted at t - 1: the previous sequence's end.
    return b.token_mask(starts[b.supervised[starts]])


@repair(supervised_packing_boundary, safe=True, does="sets the label of each packed "
        "sequence's first token (its last, with label_shift='dataset') to ignore_index")
def mask_packing_boundaries(b: Batch, hit: np.ndarray) -> Edit:
    return Edit(set={"labels": (np.flatnonzero(hit), b.facts.ignore_index)})


@rule(
    "LL501", "packed-without-position-ids", severity="error", per="row",
    message="several documents packed in {rows} rows with no position_ids restarting at "
            "their boundaries: under a plain causal mask each document attends to the ones "
            "before it",
    fix="pack with DataCollatorWithFlattening or TRL's packing (padding-free, position_ids "
        "restart per sequence) and an attention implementation that honours them "
        "(flash_attention_2, or sdpa without an attention_mask); or do not pack",
)
def packed_without_position_ids(b: Batch):
    """Several documents in one row (EOS/BOS inside it) without restarting position_ids."""
    if b.facts.eos_id is None and b.facts.bos_id is None:
        return skip("the BOS and EOS ids are unknown (give a tokenizer, or bos_id / eos_id)")
    return b.rows_hit(document_starts(b))


@rule(
    "LL502", "packed-with-attention-mask", severity="warning", per="row",
    requires=("position_ids", "attention_mask"),
    message="position_ids restart inside {rows} rows but a 0/1 attention_mask is passed too: "
            "transformers then builds the mask from it, and the packed sequences attend to "
            "each other (flash, sdpa and eager alike)",
    fix="drop attention_mask from packed batches (DataCollatorWithFlattening and TRL's "
        "padding-free collator return none), or pass a segment-id mask your attention "
        "implementation understands",
)
def packed_with_attention_mask(b: Batch):
    """Packed sequences (restarting position_ids) passed with a plain 0/1 attention_mask."""
    rows = b.rows_hit(position_restarts(b))
    if not rows.any():
        return rows
    # A mask of segment ids (1, 1, 2, 2) isolates the sequences itself: that is not this.
    return rows & (b.segment(np.maximum, b.attention_mask.astype(np.int64), 0) <= 1)


@repair(packed_with_attention_mask, safe=True, does="drops the attention_mask column when "
        "it is all ones (it hides nothing: position_ids already separate the sequences); a mask "
        "that hides padding somewhere is kept, and the rule still fires")
def drop_plain_attention_mask(b: Batch, hit: np.ndarray) -> Edit:
    if not (b.attention_mask == 1).all():
        return Edit(left=int(np.count_nonzero(hit)))
    return Edit(drop_columns=("attention_mask",), rows=np.flatnonzero(hit))


@rule(
    "LL503", "invalid-position-ids", severity="error", per="token",
    requires=("position_ids",),
    message="position_ids that do not count up by one within a sequence, start past their "
            "row's length, or are negative: {tokens} in {rows} rows",
    fix="give each sequence position_ids 0, 1, 2, ... (restarting at 0 for each packed "
        "sequence), computed per row after cutting, not across the dataset; with left "
        "padding, `attention_mask.cumsum(-1) - 1` then `masked_fill_(attention_mask == 0, 1)`",
)
def invalid_position_ids(b: Batch):
    """position_ids that skip, repeat, go back, start past the row's own length, or are < 0."""
    # A row may count from 1 or 2 (RoBERTa's position_ids_start=2): RoPE sees only
    # differences. Starting past the row's length means positions counted across rows.
    # Rows whose position_ids differ in length from input_ids are length-mismatch's.
    pos = b.position_ids
    restarts, breaks = position_restarts(b), position_breaks(b)
    bad = breaks[~np.isin(breaks, restarts)]
    first = b.first_real_index[b.first_real_index >= 0]
    start = pos[first]
    # A negative id is wrong on padding too: `attention_mask.cumsum(-1) - 1` on left padding
    # without generate's `masked_fill_(attention_mask == 0, 1)` gives -1 there, an index error
    # in a learned position table (GPT-2, OPT) however the attention mask hides the token.
    bad = np.concatenate([bad, first[(start < 0) | (start >= b.lengths[b.rows_of(first)])],
                          np.flatnonzero(pos < 0)])
    return b.token_mask(bad)
