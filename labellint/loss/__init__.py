"""The loss check: check_loss (check.py), the reference pass, the forensics, their numbers."""
