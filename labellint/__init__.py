"""labellint: a correctness linter for language-model training data."""

import sys
import types
from typing import TYPE_CHECKING

from .version import __version__ as __version__

# Each public name and the module that holds it, imported on first use: pytest loads the
# plugin (labellint.integrations.pytest_plugin) in every run of every repo that has labellint
# installed, and importing any submodule runs this file first; so `import labellint` and the
# plugin load nothing heavy (numpy, pyarrow, rich) until a name is used.
_WHERE = {
    "check": ".api",
    "Batch": ".batch",
    "ChatFormat": ".chat_format",
    "LabelLintError": ".errors",
    "Facts": ".facts",
    "fix": ".fix",
    "FixReport": ".fix_report",
    "check_loss": ".loss.check",
    "LossReport": ".loss.report",
    "all_rules": ".catalog",
    "get_rule": ".catalog",
    "rule": ".catalog",
    "select_rules": ".catalog",
    "Rule": ".registry",
    "Skip": ".registry",
    "skip": ".registry",
    "Finding": ".report",
    "SourceResult": ".report",
    "RowView": ".show",
    "show": ".show",
    "Report": ".text_report",
    "TokenWindow": ".window",
}

if TYPE_CHECKING:
    from .api import check
    from .batch import Batch
    from .catalog import all_rules, get_rule, rule, select_rules
    from .chat_format import ChatFormat
    from .errors import LabelLintError
    from .facts import Facts
    from .fix import fix
    from .fix_report import FixReport
    from .integrations.transformers import LabelLintCallback
    from .loss.check import check_loss
    from .loss.report import LossReport
    from .registry import Rule, Skip, skip
    from .report import Finding, SourceResult
    from .show import RowView, show
    from .text_report import Report
    from .window import TokenWindow


def __getattr__(name: str):
    if name in _WHERE:
        import importlib

        value = getattr(importlib.import_module(_WHERE[name], __name__), name)
        globals()[name] = value  # looked up once
        return value
    # The callback subclasses transformers.TrainerCallback: transformers is needed for it.
    if name == "LabelLintCallback":
        try:
            from .integrations.transformers import LabelLintCallback
        except ModuleNotFoundError as e:
            raise ModuleNotFoundError(f"LabelLintCallback needs {e.name}: pip install "
                                      "'labellint[hf]'", name=e.name) from None
        return LabelLintCallback
    raise AttributeError(f"module 'labellint' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


# Public functions named as the submodules that hold them.
_SHADOWED = frozenset({"fix", "show"})


class _Package(types.ModuleType):
    """This package, whose `show` and `fix` stay functions when their submodules load.

    Importing labellint.show sets the package's attribute `show` to the submodule; the eager
    `from .show import show` this file once held rebound it to the function right after.
    """

    def __setattr__(self, name: str, value) -> None:
        if name in _SHADOWED and isinstance(value, types.ModuleType):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


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
