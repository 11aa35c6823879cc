"""Apply: the graph-walking engine, the session (journal, lease, last-applied), what each
step does (steps.py) and progress reporters."""
