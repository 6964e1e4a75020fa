"""Sub-commands of the `disco` CLI, one module per group."""
