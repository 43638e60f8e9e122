"""labellint: a correctness linter for language-model training data."""

from .api import check
from .batch import Batch
from .chat_format import ChatFormat
from .errors import LabelLintError
from .facts import Facts
from .fix import fix
from .fix_report import FixReport
from .loss.check import check_loss
from .loss.report import LossReport
from .catalog import all_rules, get_rule, rule, select_rules
from .registry import Rule, Skip, skip
from .report import Finding, SourceResult
from .show import RowView, show
from .text_report import Report
from .version import __version__ as __version__
from .window import TokenWindow



def __getattr__(name: str):
    # The callback subclasses transformers.TrainerCallback: import transformers only when asked,
    # so that `import labellint` (and the command line) stays light.
    if name == "LabelLintCallback":
        try:
            from .integrations.transformers import LabelLintCallback
        except ModuleNotFoundError as e:
            raise ModuleNotFoundError(f"LabelLintCallback needs {e.name}: pip install "
                                      "'labellint[hf]'", name=e.name) from None
        return LabelLintCallback
    raise AttributeError(f"module 'labellint' has no attribute {name!r}")


__all__ = [
    "Batch",
    "ChatFormat",
    "Facts",
    "Finding",
    "FixReport",
    "LabelLintCallback",
    "LabelLintError",
    "LossReport",
    "Report",
    "Rule",
    "RowView",
    "Skip",
    "SourceResult",
    "TokenWindow",
    "all_rules",
    "check",
    "check_loss",
    "fix",
    "get_rule",
    "rule",
    "select_rules",
    "show",
    "skip",
]
