"""A pool module that fails at import: its children can never boot."""

raise RuntimeError("broken_import fails at import, on purpose")
