"""The built-in rules, grouped by concern. Importing this package registers them."""

from . import (  # noqa: F401
    attention,
    chat,
    labels,
    loss,
    packing,
    shift,
    special_tokens,
    structure,
    tokenizer_model,
)
