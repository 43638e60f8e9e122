"""LL0xx: the columns of a row do not line up."""

from ..batch import Batch
from ..registry import rule


@rule(
    "LL001", "length-mismatch", severity="error", per="row", misaligned_rows=True,
    message="columns whose lengths differ from input_ids in {rows} rows",
    fix="give labels, attention_mask and position_ids one value per input id; a seq2seq "
        "dataset (labels of their own length) does not fit a causal LM",
)
def length_mismatch(b: Batch):
    """A row's labels, attention_mask or position_ids are not as long as its input_ids."""
    return b.length_mismatch
