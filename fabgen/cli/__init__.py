"""The `fabgen` command line: one file per sub-command."""
