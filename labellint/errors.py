"""The one exception labellint raises for bad input and for failed checks."""


class LabelLintError(Exception):
    """Bad input (one clear sentence), or `Report.raise_for_errors()` with the text report."""
