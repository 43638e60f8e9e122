"""The built-in rules' predicates, one module per concern; labellint.catalog lists the modules."""
