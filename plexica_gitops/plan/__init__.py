"""The plan: its model (actions, causes), the builder and one planning module per resource
kind, the action graph, and saved plan files. Pure: no I/O."""
