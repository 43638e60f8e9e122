"""The built-in rules, grouped by concern. Importing this package registers them."""

from . import attention, chat, labels, loss, shift, special_tokens, structure  # noqa: F401
