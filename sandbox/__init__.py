"""Running untrusted candidate code. Today: `policy`, the static AST check run before any code executes."""
