"""The screens: a run (`run.py`), chat alone (`chat.py`), one candidate, and the help and quit dialogs."""
