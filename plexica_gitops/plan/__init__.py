"""The plan: its model (actions), the planner (builder.py and one module per resource kind),
the action graph, the plan's JSON form (wire.py) and saved plan files. Pure: no I/O but
reading and writing plan files."""
