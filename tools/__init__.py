"""Reserved for its issue (see the design notes)."""
