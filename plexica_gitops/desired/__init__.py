"""Desired state: the pydantic kinds, the directory built into a DesiredState, JSON Schemas,
validation rules, semver ranges, and the derived views the planner and apply share."""
