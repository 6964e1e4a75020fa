"""The Textual terminal UI: a client of the headless runner (`disco tui [RUN]`, `disco chat`).

It reads a run's events and status and writes commands to its control channel; it never runs the loop.

- `commands.py`  the slash commands: parsing, completion, help (plain functions)
- `view.py`      events folded into what the panes show: progress, conversation lines, chart points
- `candidate.py` one candidate's code, diff against its parent and check results
- `chart.py`     the fitness-over-time chart as text
- `services.py`  the event-log tail, the control channel, starting a run headless, quitting
- `chat.py`      the chat agent and memory queries (blocking: called from workers)
- `widgets.py`, `screens/`, `app.py`, `disco.tcss`  the Textual side; `make_app` is the one factory
"""
