"""The names of the token columns labellint reads from a source."""

COLUMNS = ("input_ids", "labels", "attention_mask", "position_ids")
# Labels already shifted for the loss (sequence-parallel training: transformers' context
# parallelism, accelerate's Ulysses adapter, TRL): read when present, and judged as the labels.
SHIFT_LABELS = "shift_labels"
SOURCE_COLUMNS = COLUMNS + (SHIFT_LABELS,)
