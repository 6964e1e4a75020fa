"""`disco report RUN`: what a run tried, found and failed at, as report.md and a self-contained report.html.

collect.py   ReportData, read from the run directory only (no target import)
taxonomy.py  failures by kind (checks, evaluations, jobs, vetoes, model errors)
plots.py     the figures (matplotlib PNGs)
questions.py open questions for the person
render.py    the Jinja templates in templates/ → report.md + report.html
"""
