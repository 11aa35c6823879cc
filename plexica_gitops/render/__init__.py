"""Renderers: plans (text, Markdown, JSON), validation findings, status tables, graphs."""
