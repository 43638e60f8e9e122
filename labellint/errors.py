"""LabelLintError: the one exception labellint raises, for bad input or a failed check."""


class LabelLintError(Exception):
    """Bad input (one clear sentence), or `Report.raise_for_errors()` with the text report."""
