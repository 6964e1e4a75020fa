"""Attack programs for the sandbox escape suite (one file per attack) and the table that drives it."""
