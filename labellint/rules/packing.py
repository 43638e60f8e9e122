"""LL3xx/LL5xx: several sequences packed in one row, and the position_ids that isolate them.

A packed sequence starts where position_ids go back to the row's first value (see
`Batch.sequence_starts`). Packing without position_ids shows only in the tokens: a document
boundary inside a row, which `document_starts` looks for.
"""

import numpy as np

from ..batch import Batch
from ..registry import rule, skip


def _no_tokens(b: Batch) -> np.ndarray:
    return np.zeros(b.n_tokens, dtype=bool)


def leading_bos(b: Batch, is_bos: np.ndarray) -> np.ndarray:
    """BOS tokens before the first other real token of their packed sequence (a doubled BOS at
    a start is duplicate-bos's finding, not a boundary)."""
    s = b.sequences  # shares b's flat columns: token masks line up
    first_other = s.first_where(s.real & ~is_bos, s.position_in_row, empty=s.lengths)
    return is_bos & (s.position_in_row < s.at_rows(first_other))


def stream_blocks(b: Batch) -> np.ndarray:
    """Rows cut at max_length from a token stream: nothing real is masked from the loss."""
    if b.labels is None:
        return b.at_max_length
    return b.at_max_length & ~b.row_any(b.real & ~b.supervised)


def document_starts(b: Batch) -> np.ndarray:
    """Tokens where a new document begins inside a row that nothing isolates it in.

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
    f = b.facts
    eos = f.eos_id
    bos = f.bos_id if f.bos_id != eos else None  # GPT-2's one <|endoftext|> is EOS here
    if eos is None and bos is None:
        return _no_tokens(b)
    inside = b.real & b.after_first_real & ~b.at_rows(b.packed)
    is_bos = _no_tokens(b) if bos is None else b.input_ids == bos
    after_eos = _no_tokens(b) if eos is None else (b.prev_ids == eos) & (b.input_ids != eos)
    found = (is_bos & after_eos) if not f.bos_every_turn else _no_tokens(b)
    turn_ends = [t for t in f.end_of_turn_ids if t != eos]
    if turn_ends:
        found |= after_eos & b.at_rows(b.row_any(np.isin(b.input_ids, turn_ends) & b.real))
    in_stream = b.at_rows(stream_blocks(b))
    if in_stream.any():
        found |= in_stream & ((is_bos & ~leading_bos(b, is_bos)) | after_eos)
    return inside & found


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
    starts = b.sequence_starts
    if b.facts.label_shift == "model":
        # labels[t] is predicted at t - 1: the last token of the sequence before.
        return starts & b.supervised
    # labels[t] is the target of t: the last token of a sequence must have none.
    before = np.zeros(b.n_tokens, dtype=bool)
    before[:-1] = starts[1:]
    return before & b.supervised


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
    return b.row_any(document_starts(b))


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
    # A mask of segment ids (1, 1, 2, 2) isolates the sequences itself: that is not this.
    binary = b.segment(np.maximum, b.attention_mask.astype(np.int64), 0) <= 1
    return b.row_any(b.position_restarts) & binary


@rule(
    "LL503", "invalid-position-ids", severity="error", per="token",
    requires=("position_ids",),
    message="position_ids that do not count up by one from {start} within a sequence: "
            "{tokens} in {rows} rows",
    fix="give each sequence position_ids {start}, {start}+1, ... (restarting at {start} for "
        "each packed sequence), computed per row, not across the dataset",
)
def invalid_position_ids(b: Batch, *, start: int = 0):
    """position_ids that skip, repeat, go back, or start past the row's own length."""
    # Rows whose position_ids differ in length from input_ids are length-mismatch's finding.
    pos = b.position_ids
    first = b.first_real_index
    bad = b.real & b.after_first_real & (b.position_steps != 1) & ~b.position_restarts
    ok = first >= 0
    bad[first[ok]] |= pos[first[ok]] != start
    return bad | (b.real & (pos < 0))
