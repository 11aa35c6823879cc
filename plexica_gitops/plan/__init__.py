"""The plan: its model (actions), the planner (builder.py and one module per resource kind),
the action graph, the plan's JSON form (wire.py), saved plan files, and drift (a plan's
actions split into drift and pending, drift.py). Pure: no I/O but reading and writing plan
files."""
