"""What every step stands on: the typed spec, the repository layout, processes, errors and the CLI wrapper."""
