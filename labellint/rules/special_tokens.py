"""LL4xx: BOS, EOS and token ids as the model will see them."""

import numpy as np

from ..batch import Batch, outside_vocab
from ..registry import rule, skip


def _stream_blocks(b: Batch) -> np.ndarray:
    """Rows cut from a token stream: packed rows, and max_length rows with nothing masked.

    Such a row starts and ends mid-document by design (run_clm's group_texts, TRL's wrapped
    packing); a truncated SFT row has a masked prompt. Packed sequences inside a row are
    the packing rules' to judge.
    """
    if b.labels is None:
        return b.at_max_length | b.packed
    return (b.at_max_length & ~b.row_any(b.real & ~b.supervised)) | b.packed


@rule(
    "LL401", "duplicate-bos", severity="error", per="row", requires=("bos_id",),
    message="BOS twice at the start of {rows} rows",
    fix="tokenize chat-template text with add_special_tokens=False (the template already "
        "writes BOS), or apply the template with tokenize=True",
)
def duplicate_bos(b: Batch):
    """A row starting with BOS twice: template text tokenized again with special tokens."""
    bos = b.facts.bos_id
    first, ok1 = b.ids_at(b.first_real_index)
    second, ok2 = b.ids_at(b.first_real_index, 1)
    return ok1 & ok2 & (first == bos) & (second == bos)


@rule(
    "LL402", "missing-bos", severity="warning", per="row", requires=("bos_id",),
    message="no BOS at the start of {rows} rows, though the tokenizer adds one",
    fix="tokenize with add_special_tokens=True, or use a chat template that writes BOS",
)
def missing_bos(b: Batch):
    """Rows without BOS where the tokenizer adds one: the model sees an unfamiliar start."""
    if not b.facts.add_bos:
        return skip("the tokenizer is not known to add BOS")
    first, ok = b.ids_at(b.first_real_index)
    return ok & (first != b.facts.bos_id) & ~_stream_blocks(b)


@rule(
    "LL403", "eos-never-supervised", severity="error", per="row", requires=("labels", "eos_id"),
    message="EOS in the input but never a target in {rows} rows: the model does not learn "
            "to stop",
    fix="keep the label on the final EOS; with pad_token == eos_token, mask padding by "
        "attention_mask (or give the tokenizer a distinct pad token) instead of by id",
)
def eos_never_supervised(b: Batch):
    """Rows whose EOS is in the input but never a label (e.g. masked with the padding by id)."""
    # Only a stop token from the first target on counts: a user turn's <|im_end|> in the
    # prompt, or a BOS that is also EOS (OPT), is not the answer's end. Stop tokens are few,
    # so they are judged from their flat indices.
    stops = np.flatnonzero(b.is_stop & b.real if b.may_pad else b.is_stop)
    rows = b.rows_of(stops)
    first = b.first_target_index[rows]
    has_eos = np.zeros(b.n_rows, dtype=bool)
    has_eos[rows[(first >= 0) & (stops >= first)]] = True
    out = has_eos & ~b.row_any(b.label_is_stop)
    if b.turns is not None:
        # A chat row's closed assistant turns are LL603's (end-of-turn-not-supervised).
        from ..chat import rows_with_turn_end

        out &= ~rows_with_turn_end(b)
    return out


@rule(
    "LL404", "missing-eos", severity="warning", per="row", requires=("labels", "eos_id"),
    message="no EOS at the end of {rows} rows",
    fix="append tokenizer.eos_token to each example (many tokenizers do not add it)",
)
def missing_eos(b: Batch):
    """Training rows that do not end with EOS: the model never sees where an answer ends."""
    # Rows without labels are prompts for generation, which end where the model takes over.
    return (b.real_lengths > 0) & ~b.ends_with_stop & ~b.at_max_length & ~b.packed


def _out_of_vocab_message(t):
    where = ("negative" if t["vocab_size"] is None
             else f"outside the embedding table (0 to {t['vocab_size'] - 1})")
    return f"input ids {where}: {t['tokens']} in {t['rows']} rows"


@rule(
    "LL405", "token-out-of-vocab", severity="error", per="token",
    message=_out_of_vocab_message,
    fix="call model.resize_token_embeddings(len(tokenizer)) after adding tokens; never pad "
        "input_ids with {ignore_index}",
)
def token_out_of_vocab(b: Batch, *, placeholder_ids: tuple[int, ...] = (-200,)):
    """An input id past the embedding table (or negative): a crash or a silent wrong lookup."""
    bad = outside_vocab(b.input_ids, b.facts.vocab_size)
    if placeholder_ids and bad.any():
        # LLaVA-style models swap these placeholders for image features before the lookup.
        index = np.flatnonzero(bad)
        bad[index[np.isin(b.input_ids[index], placeholder_ids)]] = False
    return bad


@rule(
    "LL409", "truncated-target", severity="warning", per="row",
    requires=("labels", "eos_id", "max_length"),
    message="answers cut off at max_length={max_length} in {rows} rows: supervision runs "
            "to the last token, with no EOS",
    fix="raise max_length, truncate the prompt instead of the answer, or drop such rows",
)
def truncated_target(b: Batch):
    """Rows cut at max_length mid-answer: the model learns answers that stop without an end."""
    last = b.last_real_index
    ok = last >= 0
    reaches_end = np.zeros(b.n_rows, dtype=bool)
    reaches_end[ok] = b.supervised[last[ok]]
    if b.facts.label_shift == "dataset":  # the last position has no next token to be labelled
        prev_ok = ok & (last - 1 >= b.starts)
        reaches_end[prev_ok] |= b.supervised[last[prev_ok] - 1]
    cut = b.at_max_length & ~_stream_blocks(b)
    return cut & reaches_end & ~b.ends_with_stop
