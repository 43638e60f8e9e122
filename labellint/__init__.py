"""labellint: a correctness linter for language-model training data."""

from .api import check
from .batch import Batch
from .errors import LabelLintError
from .facts import Facts
from .registry import Rule, Skip, all_rules, get_rule, rule, select_rules, skip
from .report import Finding, Report, SourceResult
from .show import RowView, show
from .view import TokenWindow

__version__ = "0.1.0"
__all__ = [
    "Batch",
    "Facts",
    "Finding",
    "LabelLintError",
    "Report",
    "Rule",
    "RowView",
    "Skip",
    "SourceResult",
    "TokenWindow",
    "all_rules",
    "check",
    "get_rule",
    "rule",
    "select_rules",
    "show",
    "skip",
]
