"""`python -m labellint`: the command line."""

from .cli import main

raise SystemExit(main())
