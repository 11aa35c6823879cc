"""`plan --format json`: the plan's JSON form (documented in plexica_gitops/plan/wire.py)
with two-space indentation, keys in the documented order, ASCII only, ending with a newline;
the same plan always gives the same bytes."""

from __future__ import annotations

import json

from plexica_gitops.plan.model import Plan
from plexica_gitops.plan.wire import plan_to_json


def render_json(plan: Plan) -> str:
    return json.dumps(plan_to_json(plan), indent=2, sort_keys=False) + "\n"
