"""LL4xx: special tokens (BOS, EOS, pad, token ids) as the model will see them."""

import numpy as np

from ..batch import Batch
from ..ragged import in_sorted, ranges_index
from ..registry import Edit, repair, rule, skip
from ..sequences import (
    packed,
    rows_of_sequences,
    sequence_ends_row,
    sequence_first,
    sequence_row,
    sequence_starts,
    sequences,
)
from ..turns import answer_unfinished, rows_with_turn_end, turns_of


def _stream_blocks(b: Batch) -> np.ndarray:
    """Rows cut from a token stream: packed rows, and max_length rows with nothing masked.

    Such a row starts and ends mid-document by design (run_clm's group_texts, TRL's wrapped
    packing); a truncated SFT row has a masked prompt. Packed sequences inside a row are
    the packing rules' to judge, and so are rows of documents packed without position_ids
    (packed-without-position-ids names the cause; a cut answer there is its consequence).
    """
    from .packing import document_starts, stream_blocks

    return stream_blocks(b) | packed(b) | b.rows_hit(document_starts(b))


@rule(
    "LL401", "duplicate-bos", severity="error", per="row", requires=("bos_id",),
    message="BOS twice at the start of {rows} rows",
    fix="tokenize chat-template text with add_special_tokens=False (the template already "
        "writes BOS), or apply the template with tokenize=True; with TRL's SFTTrainer, give "
        "it the `messages` rather than text rendered by apply_chat_template",
)
def duplicate_bos(b: Batch):
    """A row starting with BOS twice: template text tokenized again with special tokens."""
    bos = b.facts.bos_id
    first, ok1 = b.ids_at(b.first_real_index)
    second, ok2 = b.ids_at(b.first_real_index, 1)
    return ok1 & ok2 & (first == bos) & (second == bos)


@repair(duplicate_bos, safe=True, does="removes the second BOS from input_ids, labels, "
        "attention_mask and position_ids alike (position ids after it count on from the first)")
def remove_second_bos(b: Batch, hit: np.ndarray) -> Edit:
    rows = np.flatnonzero(hit)
    second = b.first_real_index[rows] + 1
    changes = {}
    if b.labels is not None and b.facts.label_shift == "dataset":
        # labels[t] targets t + 1: the label before the removed token must target what follows.
        changes["labels"] = (second - 1, b.labels[second])
    if b.position_ids is not None:
        starts = np.append(sequence_starts(b), b.n_tokens)  # where the BOS's sequence ends
        end = np.minimum(starts[np.searchsorted(starts, second, side="right")], b.ends[rows])
        index = ranges_index(second + 1, end)
        changes["position_ids"] = (index, b.position_ids[index] - 1)
    return Edit(set=changes, delete=second)


def supervise_stops(b: Batch, stops: np.ndarray) -> Edit:
    """Labels that make the stop tokens at `stops` targets, under the label convention."""
    if b.facts.label_shift == "dataset":
        stops = stops[stops > b.starts[b.rows_of(stops)]]
        return Edit(set={"labels": (stops - 1, b.input_ids[stops])})
    return Edit(set={"labels": (stops, b.input_ids[stops])})


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
    stops = b.stop_index[b.real_at(b.stop_index)]
    rows = b.rows_of(stops)
    first = b.first_target_index[rows]
    out = b.rows_hit(stops[(first >= 0) & (stops >= first)])
    out[b.rows_of(b.stop_target_index)] = False
    if turns_of(b) is not None:
        # A chat row's closed assistant turns are LL603's (end-of-turn-not-supervised).
        out &= ~rows_with_turn_end(b)
    return out


@repair(eos_never_supervised, safe=False, does="gives the row's last EOS after its first "
        "target its label (the EOS itself), so the model learns to stop")
def supervise_last_eos(b: Batch, hit: np.ndarray) -> Edit:
    stops = b.stop_index[b.real_at(b.stop_index)]
    rows = b.rows_of(stops)
    stops = stops[hit[rows] & (stops >= b.first_target_index[rows])]
    rows = b.rows_of(stops)
    last = np.append(rows[1:] != rows[:-1], True) if rows.size else rows.astype(bool)
    return supervise_stops(b, stops[last])


@rule(
    "LL404", "missing-eos", severity="warning", per="row", requires=("labels", "eos_id"),
    message="no EOS at the end of {rows} rows",
    fix="append tokenizer.eos_token to each example (many tokenizers do not add it)",
)
def missing_eos(b: Batch):
    """Training rows that do not end with EOS: the model never sees where an answer ends."""
    # Rows without labels are prompts for generation, which end where the model takes over.
    # Each packed sequence must end with EOS as a row must: it is judged on its own, except
    # the last of a row cut at max_length (wrapped packing continues it in the next row).
    s = sequences(b)
    cut = s.at_max_length | (b.at_max_length[sequence_row(b)] & sequence_ends_row(b))
    return rows_of_sequences(b, (s.real_lengths > 0) & ~s.ends_with_stop & ~cut)


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
    index = b.outside_vocab_index
    if placeholder_ids and index.size:
        # LLaVA-style models swap these placeholders for image features before the lookup.
        index = index[~np.isin(b.input_ids[index], placeholder_ids)]
    return b.token_mask(index)


@rule(
    "LL409", "truncated-target", severity="warning", per="row",
    requires=("labels", "eos_id", "max_length"),
    message="answers cut off at max_length={max_length} in {rows} rows: the row ends "
            "mid-answer with no EOS, or before its answer begins",
    fix="raise max_length, truncate the prompt instead of the answer, or drop such rows",
)
def truncated_target(b: Batch):
    """Rows cut at max_length mid-answer or before it: answers that stop, or none at all."""
    # Packed sequences are judged each on its own: TRL's bfd packing truncates sequences.
    s = sequences(b)
    return rows_of_sequences(b, _truncated(s))


def _truncated(b: Batch):
    if not b.at_max_length.any():
        return b.at_max_length
    cut = b.at_max_length & ~_stream_blocks(b)
    out = cut & b.ends_supervised & ~b.ends_with_stop
    turns = turns_of(b) if cut.any() else None
    if turns is not None and turns.n:
        # In a chat row a stop token may be the user's end of turn: the row is whole only
        # when its last turn is an assistant turn that reached its own end.
        out |= cut & answer_unfinished(b)
    return out


@rule(
    "LL406", "stray-bos", severity="warning", per="token", requires=("bos_id",),
    message="BOS inside a sequence, or BOS as a training target, in {rows} rows "
            "({tokens} tokens)",
    fix="tokenize the parts after the first with add_special_tokens=False (prompt and answer "
        "tokenized separately, or `text_target=`, each get a BOS), and keep BOS out of labels",
)
def stray_bos(b: Batch):
    """BOS inside a row where no packed sequence starts, or BOS as a supervised target."""
    from .packing import document_starts, in_leading_run

    f = b.facts
    if f.bos_id == f.eos_id:
        return skip("BOS is also EOS (GPT-2 style): BOS inside a row is EOS", by_design=True)
    ids = b.input_ids
    bos_at = b.where_id(f.bos_id)

    def expected(index: np.ndarray) -> np.ndarray:
        """A sequence's start, its doubled BOS (duplicate-bos's), or a document boundary
        (packed-without-position-ids'); with a per-turn-BOS template, a BOS after EOS."""
        out = (sequence_first(b, index) == index) | in_sorted(index, document_starts(b))
        is_bos = ids[index] == f.bos_id
        out |= is_bos & in_leading_run(b, index, bos_at)
        if f.bos_every_turn and f.eos_id is not None:
            after = index > b.starts[b.rows_of(index)]
            out |= is_bos & after & (ids[index - after] == f.eos_id)  # `</s><s>[INST]`
        return out

    stray = bos_at[b.real_at(bos_at)]
    stray = stray[~expected(stray)]
    if b.labels is None:
        return b.token_mask(stray)
    target = b.targets_labelled((f.bos_id,))
    # With labels already shifted, labels[t] targets the input token at t + 1.
    refers = target + 1 if f.label_shift == "dataset" else target
    ok = refers < b.n_tokens
    target = target[ok][~expected(refers[ok])]
    return b.token_mask(np.concatenate([stray, target]))


@rule(
    "LL410", "pad-is-eos", severity="warning", per="row", requires=("labels", "eos_id", "pad_id"),
    message="pad_token_id == eos_token_id ({eos_id}) and every EOS label is {ignore_index} in "
            "{rows} rows: padding was masked by id, which masks each answer's EOS with it "
            "(DataCollatorForLanguageModeling sets labels[input_ids == pad_token_id] = -100)",
    fix="give the tokenizer a pad token of its own (e.g. `<|finetune_right_pad_id|>`, "
        "`<pad>`, or unk) or mask padding by attention_mask (DataCollatorForSeq2Seq, TRL's "
        "collators), so the final EOS keeps its label",
)
def pad_is_eos(b: Batch):
    """pad == EOS and padding masked by id, which masks the real EOS labels too."""
    f = b.facts
    if f.pad_id != f.eos_id:
        return np.zeros(b.n_rows, dtype=bool)
    eos = np.flatnonzero(b.input_ids == f.eos_id)
    # The label that targets input t sits at t - shift; that of t - 1 at t - 1 - shift.
    shift = 1 if f.label_shift == "dataset" else 0
    eos = eos[b.real_at(eos) & (eos - b.starts[b.rows_of(eos)] >= 1 + shift)]
    kept = b.supervised[eos - shift]
    answered = b.targets[eos - 1 - shift]
    # The answer is supervised up to a real EOS whose label is gone: what masking every pad id
    # leaves behind. Masking by id spares no EOS, so one real EOS that keeps its label anywhere
    # in the batch says padding was masked by position, and a lost EOS is another mistake
    # (an off-by-one in prompt masking: LL603's finding), not this one.
    if kept.any():
        return np.zeros(b.n_rows, dtype=bool)
    return b.rows_hit(eos[answered])
