"""CLI command functions, one module per area; :mod:`hmtools.cli` lists them."""
