"""The `disco` command (`cli`, `commands/`) and the data dir (`home`); the meta-agent will live here."""
