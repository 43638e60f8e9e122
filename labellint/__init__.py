"""labellint: a correctness linter for language-model training data."""

from .api import check
from .batch import Batch
from .chat import ChatFormat
from .errors import LabelLintError
from .facts import Facts
from .registry import Rule, Skip, all_rules, get_rule, rule, select_rules, skip
from .report import Finding, Report, SourceResult

__version__ = "0.1.0"
__all__ = [
    "Batch",
    "ChatFormat",
    "Facts",
    "Finding",
    "LabelLintError",
    "Report",
    "Rule",
    "Skip",
    "SourceResult",
    "all_rules",
    "check",
    "get_rule",
    "rule",
    "select_rules",
    "skip",
]
