"""Apply: the graph-walking engine, the session (journal, lease, last-applied), progress
reporters, and one executor module per resource kind."""
