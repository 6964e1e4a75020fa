"""The prompt templates (Jinja2, rendered with StrictUndefined by agent.prompting): system, design,
reflect_1 (novelty), reflect_2 (rules, correctness, stability), repair, and shared macros."""
