"""The report's Jinja templates (a package, so that they ship as package data)."""
