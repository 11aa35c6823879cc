"""Scale benchmark for `plexica-gitops validate`.

Generates a synthetic but realistic desired state (default: 200 plugins x 5,000 tenants, each
tenant enabling 20 plugins) and measures `validate_directory` on it:

* wall time, split into the three stages `validate_directory` is made of:
  load   = plexica_gitops.source.loader.load_directory(root)
  build  = plexica_gitops.desired.build.build_desired_state(root), fed the already-loaded result
           (its own `load_directory` call is patched to return it, so nothing is read twice)
  rules  = plexica_gitops.desired.validate.validate_build(built)
  validate_directory(root) is exactly validate_build(build_desired_state(root)), and
  build_desired_state(root) is load_directory(root) followed by the build, so
  load + build + rules is the time of one validate_directory call.
* peak memory as RSS: the measurement runs in a child process and the parent reads
  resource.getrusage(RUSAGE_CHILDREN).ru_maxrss once that child has exited. The child also
  reports its own RSS after importing plexica_gitops (the baseline), so the growth caused by
  validating is visible.

The generated state must be VALID: the script fails (exit 1) if validate reports any error.

    python bench/validate_scale.py                       # 200 x 5000 x 20
    python bench/validate_scale.py --plugins 50 --tenants 1000
    python bench/validate_scale.py --json                # machine-readable, one JSON object
    python bench/validate_scale.py --profile 15          # + cProfile top 15 (separate child)
    python bench/validate_scale.py --direct              # + one unsplit validate_directory()
    python bench/validate_scale.py --out bench/out/big   # keep the generated state
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import os
import platform
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
MARKER = ".validate-scale-generated"  # dot-files are ignored by the loader

# --------------------------------------------------------------------------- YAML writing
#
# The generator writes YAML text itself (yaml.dump is pure Python and far too slow for
# ~5,000 files): block style like the hand-written example, flow style for short lists and
# small mappings, double-quoted (JSON) strings wherever a plain scalar could be misread.

# Characters a plain scalar may hold here (no flow indicators, quotes, '#' or '&*!|>%`').
_PLAIN_CHARS = re.compile(r"[A-Za-z0-9._/@:^~+$ -]+\Z")
_RESOLVER = yaml.resolver.Resolver()
_STR_TAG = "tag:yaml.org,2002:str"


@functools.cache
def _plain_ok(text: str) -> bool:
    """Whether `text` can be written unquoted and still load as the same string."""
    return bool(
        _PLAIN_CHARS.match(text)
        and text[0] not in "-?:@ "
        and text[-1] not in ": "
        and ": " not in text
        and _RESOLVER.resolve(yaml.ScalarNode, text, (True, False)) == _STR_TAG
    )


def _scalar(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)  # always has a '.', as YAML 1.1 floats need
    return value if _plain_ok(value) else json.dumps(value)


def _key(key: str) -> str:
    return key if _plain_ok(key) else json.dumps(key)


def _is_scalar(value: Any) -> bool:
    return not isinstance(value, dict | list)


def _flow(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    return _scalar(value)


_FLOW_KEYS = frozenset({"fromEnv", "secretRef", "$ref"})


def _inline(value: Any, in_list: bool) -> str | None:
    """The flow form of `value` where the hand-written example uses one: lists of
    scalars, references ({fromEnv: X}, {secretRef: {...}}, {$ref: ...}) and small
    mappings that are list items ({key: accountTier, type: text}); else None (block)."""
    if isinstance(value, list):
        if all(_is_scalar(v) for v in value):
            flow = _flow(value)
            return flow if len(flow) <= 72 else None
        return None
    if len(value) == 1 and next(iter(value)) in _FLOW_KEYS:
        return _flow(value)
    if in_list and all(_is_scalar(v) for v in value.values()):
        flow = _flow(value)
        return flow if len(flow) <= 72 else None
    return None


def _emit(value: Any, indent: int, out: list[str]) -> None:
    pad = " " * indent
    if isinstance(value, dict):
        for key, item in value.items():
            head = f"{pad}{_key(key)}:"
            if _is_scalar(item):
                out.append(f"{head} {_scalar(item)}")
            elif not item:
                out.append(f"{head} {'{}' if isinstance(item, dict) else '[]'}")
            elif (flow := _inline(item, in_list=False)) is not None:
                out.append(f"{head} {flow}")
            else:
                out.append(head)
                _emit(item, indent + 2, out)
    else:
        for item in value:
            if _is_scalar(item):
                out.append(f"{pad}- {_scalar(item)}")
            elif (flow := _inline(item, in_list=True)) is not None:
                out.append(f"{pad}- {flow}")
            elif isinstance(item, dict):
                lines: list[str] = []
                _emit(item, indent + 2, lines)
                lines[0] = f"{pad}- {lines[0][indent + 2 :]}"
                out.extend(lines)
            else:
                out.append(f"{pad}-")
                _emit(item, indent + 2, out)


def to_yaml(document: dict[str, Any], header: str) -> str:
    out = [header]
    _emit(document, 0, out)
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- the model

API_VERSION = "plexica.io/v1alpha1"
CORE_VERSION = "2.4.0"
PLATFORM_TOPICS = ["core.tenant.created", "core.tenant.deleted", "core.user.created"]
CORE_RANGES = ["^2.0.0", "~2.4", ">=2.1 <3.0", "2.x", "^1.0.0 || ^2.0.0", ">=2.4.0"]
LEVEL_SHARE = [0.40, 0.25, 0.15, 0.12, 0.08]  # dependency depth 0..4 (longest chain: 4 edges)
NON_ACTIVE_SHARE = 0.05  # plugins desired `installed`/`disabled`: no tenant may enable them
SUSPENDED_SHARE = 0.10
EMPTY_CONFIG_SHARE = 0.15  # bindings that take every schema default

DOMAINS = [
    "contacts", "crm", "billing", "analytics", "notifications", "inventory", "payroll", "hr",
    "helpdesk", "projects", "timesheets", "expenses", "procurement", "assets", "fleet", "docs",
    "wiki", "forms", "surveys", "calendar", "chat", "marketing", "campaigns", "loyalty", "pos",
    "ecommerce", "shipping", "warehouse", "quality", "maintenance"
]  # fmt: skip
ENTITIES = [
    "item", "record", "order", "entry", "ticket", "task", "document", "account", "batch",
    "report"
]  # fmt: skip
VERBS = ["created", "updated", "deleted", "approved", "closed", "archived", "published", "synced"]
RESOURCES = ["items", "records", "orders", "settings", "reports", "exports", "imports", "workflows"]
ACTIONS = ["read", "write", "delete", "manage", "approve", "export"]
TEAMS = ["sales-apps", "finance-apps", "ops-apps", "people-apps", "platform-apps", "growth-apps"]
PLANS = ["starter", "business", "enterprise"]
WORDS = [
    "acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "wonka", "tyrell",
    "cyberdyne", "soylent", "aperture", "vandelay", "dunder", "oscorp", "massive", "monarch",
    "gringotts", "nakatomi", "weyland", "prestige", "duff", "krusty", "blue", "red", "green",
    "north", "south", "east", "west", "alpha", "beta", "gamma", "delta", "omega", "nova",
    "terra", "luna", "sol", "river", "stone", "oak", "pine", "maple", "cedar", "iron", "gold",
    "silver", "coral", "amber", "jade", "onyx", "atlas", "orion"
]  # fmt: skip
TIMEZONES = [
    "UTC", "Europe/Berlin", "Europe/Rome", "Europe/London", "America/New_York",
    "America/Los_Angeles", "America/Sao_Paulo", "Asia/Tokyo", "Asia/Kolkata",
    "Australia/Sydney",
]  # fmt: skip
COUNTRIES = ["US", "GB", "DE", "IT", "FR", "ES", "NL", "JP", "BR", "IN"]

SECRET_REFERENCE_DEF = {
    "oneOf": [
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["fromEnv"],
            "properties": {"fromEnv": {"type": "string", "pattern": "^[A-Z_][A-Z0-9_]*$"}},
        },
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["secretRef"],
            "properties": {
                "secretRef": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["name", "key"],
                    "properties": {
                        "name": {"type": "string", "minLength": 1},
                        "key": {"type": "string", "minLength": 1},
                    },
                }
            },
        },
    ]
}

# Configuration property kinds: (names to draw from, schema maker, tenant value maker).
# No name here may look like a secret (validate's SECRET_KEY) unless its value is a reference.
ENUMS = {
    "currency": ["USD", "EUR", "GBP", "JPY"],
    "region": ["eu-west", "eu-central", "us-east", "us-west", "ap-south"],
    "mode": ["strict", "lenient", "audit"],
    "tier": ["basic", "standard", "premium"],
    "unitSystem": ["metric", "imperial"],
    "duplicateDetection": ["off", "email", "email-and-phone"],
    "roundingMode": ["half-up", "half-even", "down"],
    "theme": ["light", "dark", "system"],
}
INTEGERS = {
    "retentionDays": (30, 1825),
    "staleAfterDays": (1, 365),
    "batchSize": (10, 5000),
    "maxAttachments": (0, 50),
    "pageSize": (10, 200),
    "reminderHours": (1, 72),
}
ARRAY_ENUMS = {
    "channels": ["email", "in-app", "slack", "sms"],
    "dashboards": ["pipeline", "win-rate", "revenue", "overdue", "usage"],
    "exportFormats": ["csv", "xlsx", "pdf", "json"],
    "weekdays": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
}


def _tenant_code(slug: str) -> str:
    return re.sub(r"[^A-Z0-9]", "", slug.upper())[:8] + "-"


class PropertyKind:
    """One configuration property: its schema, and a valid value for a given tenant."""

    def __init__(self, rng: random.Random, used: set[str], kind: str) -> None:
        self.kind = kind
        self.uses_secret_ref = False
        self.name, self.schema = self._make(rng, used)

    def _pick(self, rng: random.Random, names: list[str], used: set[str]) -> str:
        free = [n for n in names if n not in used] or [f"{names[0]}{len(used)}"]
        name = rng.choice(free)
        used.add(name)
        return name

    def _make(self, rng: random.Random, used: set[str]) -> tuple[str, dict[str, Any]]:
        kind = self.kind
        if kind == "enum":
            name = self._pick(rng, list(ENUMS), used)
            options = ENUMS.get(name, ENUMS["mode"])
            return name, {"type": "string", "enum": options, "default": options[0]}
        if kind == "integer":
            name = self._pick(rng, list(INTEGERS), used)
            low, high = INTEGERS.get(name, (0, 100))
            return name, {
                "type": "integer",
                "description": f"Between {low} and {high}.",
                "minimum": low,
                "maximum": high,
                "default": low,
            }
        if kind == "boolean":
            name = self._pick(
                rng, ["requireApproval", "autoArchive", "welcomeEmail", "auditLog"], used
            )
            return name, {"type": "boolean", "default": False}
        if kind == "number":
            name = self._pick(rng, ["taxRatePercent", "discountPercent", "threshold"], used)
            return name, {"type": "number", "minimum": 0, "maximum": 100, "default": 0}
        if kind == "prefix":
            name = self._pick(rng, ["numberPrefix", "codePrefix"], used)
            return name, {"type": "string", "pattern": "^[A-Z0-9-]{1,12}$", "default": "X-"}
        if kind == "timezone":
            name = self._pick(rng, ["timezone", "reportingTimezone"], used)
            return name, {
                "type": "string",
                "description": "IANA time zone.",
                "pattern": "^[A-Za-z_]+(/[A-Za-z_]+)*$",
                "default": "UTC",
            }
        if kind == "country":
            name = self._pick(rng, ["defaultCountry", "homeCountry"], used)
            return name, {"type": "string", "pattern": "^[A-Z]{2}$", "default": "US"}
        if kind == "array":
            name = self._pick(rng, list(ARRAY_ENUMS), used)
            options = ARRAY_ENUMS.get(name, ARRAY_ENUMS["channels"])
            return name, {
                "type": "array",
                "minItems": 1,
                "uniqueItems": True,
                "items": {"type": "string", "enum": options},
                "default": options[:1],
            }
        if kind == "window":
            name = self._pick(rng, ["quietHours", "businessHours"], used)
            hhmm = {"type": "string", "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$"}
            return name, {
                "type": "object",
                "additionalProperties": False,
                "required": ["start", "end"],
                "properties": {"start": hhmm, "end": hhmm},
            }
        if kind == "fields":
            name = self._pick(rng, ["customFields", "extraColumns"], used)
            return name, {
                "type": "array",
                "maxItems": 20,
                "default": [],
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["key", "type"],
                    "properties": {
                        "key": {"type": "string", "pattern": "^[a-z][a-zA-Z0-9]*$"},
                        "type": {"type": "string", "enum": ["text", "number", "date", "boolean"]},
                        "required": {"type": "boolean", "default": False},
                    },
                },
            }
        if kind == "connection":
            self.uses_secret_ref = True
            name = self._pick(rng, ["smtp", "sftp", "ldap"], used)
            return name, {
                "type": "object",
                "additionalProperties": False,
                "required": ["host", "port"],
                "properties": {
                    "host": {"type": "string", "minLength": 1},
                    "port": {"type": "integer", "enum": [25, 22, 389, 465, 587, 636]},
                    "username": {"type": "string"},
                    "password": {"$ref": "#/$defs/secretReference"},
                },
            }
        if kind == "secret":
            self.uses_secret_ref = True
            name = self._pick(rng, ["apiKey", "webhookSecret", "botToken"], used)
            return name, {"$ref": "#/$defs/secretReference"}
        raise ValueError(kind)

    def value(self, rng: random.Random, slug: str) -> Any:
        kind, schema = self.kind, self.schema
        if kind == "enum":
            return rng.choice(schema["enum"])
        if kind == "integer":
            return rng.randint(schema["minimum"], schema["maximum"])
        if kind == "boolean":
            return rng.random() < 0.5
        if kind == "number":
            return round(rng.uniform(0, 30), 2)
        if kind == "prefix":
            return _tenant_code(slug)
        if kind == "timezone":
            return rng.choice(TIMEZONES)
        if kind == "country":
            return rng.choice(COUNTRIES)
        if kind == "array":
            options = schema["items"]["enum"]
            return rng.sample(options, rng.randint(1, len(options)))
        if kind == "window":
            return {"start": f"{rng.randint(17, 23):02d}:00", "end": f"0{rng.randint(5, 9)}:30"}
        if kind == "fields":
            return [
                {"key": f"field{n}", "type": rng.choice(["text", "number", "date"])}
                | ({"required": True} if n == 0 else {})
                for n in range(rng.randint(1, 3))
            ]
        if kind == "connection":
            return {
                "host": f"{self.name}.{slug}.example.com",
                "port": rng.choice(self.schema["properties"]["port"]["enum"]),
                "username": f"plexica-{slug}"[:40],
                "password": _reference(rng, slug, self.name),
            }
        if kind == "secret":
            return _reference(rng, slug, self.name)
        raise ValueError(kind)


def _reference(rng: random.Random, slug: str, what: str) -> dict[str, Any]:
    if rng.random() < 0.5:
        env = re.sub(r"[^A-Z0-9]", "_", f"{slug}_{what}".upper())
        return {"fromEnv": env}
    return {"secretRef": {"name": f"{slug}-{what.lower()}", "key": "value"}}


PROPERTY_KINDS = [
    "enum", "integer", "boolean", "number", "prefix", "timezone", "country", "array",
    "window", "fields", "connection", "secret",
]  # fmt: skip


class PluginSpec:
    def __init__(self, index: int, level: int, rng: random.Random) -> None:
        domain = DOMAINS[index % len(DOMAINS)]
        self.id = f"{domain}-{index:03d}"
        self.table = self.id.replace("-", "_")
        self.level = level
        self.version = (rng.randint(1, 3), rng.randint(0, 9), rng.randint(0, 12))
        self.state = "active"
        self.dependencies: list[tuple[PluginSpec, str]] = []  # (plugin, range)
        self.closure: tuple[str, ...] = (self.id,)  # itself and everything it needs, deps first
        entities = rng.sample(ENTITIES, rng.randint(1, 3))
        self.publishes = [f"{self.table}.{e}.{v}" for e in entities for v in rng.sample(VERBS, 2)]
        self.subscribes: list[str] = []
        self.permissions = [
            f"{self.id}:{r}:{a}"
            for r in rng.sample(RESOURCES, rng.randint(1, 3))
            for a in rng.sample(ACTIONS, 2)
        ]
        used: set[str] = set()
        kinds = rng.sample(PROPERTY_KINDS, rng.randint(3, 7))
        self.properties = [PropertyKind(rng, used, kind) for kind in kinds]
        self.required = [p.name for p in self.properties if p.kind in ("enum", "timezone")][:1]

    @property
    def version_text(self) -> str:
        return "{}.{}.{}".format(*self.version)

    def range_for(self, rng: random.Random) -> str:
        major, minor, patch = self.version
        forms = [
            f"^{major}.{minor}.0",
            f"^{major}.0.0",
            f"~{major}.{minor}",
            f"{major}.x",
            f">={major}.0.0 <{major + 1}.0.0",
            f"^{major}.{minor}.{patch} || ^{major + 1}.0.0",
            f"{major}.{minor}.0 - {major}.{minor + 1}",
        ]
        return rng.choice(forms)

    def config_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "additionalProperties": False,
        }
        if self.required:
            schema["required"] = self.required
        if any(p.uses_secret_ref for p in self.properties):
            schema["$defs"] = {"secretReference": SECRET_REFERENCE_DEF}
        schema["properties"] = {p.name: p.schema for p in self.properties}
        return schema

    def configuration(self, rng: random.Random, slug: str) -> dict[str, Any]:
        if not self.required and rng.random() < EMPTY_CONFIG_SHARE:
            return {}
        chosen = [p for p in self.properties if p.name in self.required or rng.random() < 0.7]
        return {p.name: p.value(rng, slug) for p in chosen}

    def document(self, rng: random.Random) -> dict[str, Any]:
        version = self.version_text
        manifest: dict[str, Any] = {
            "id": self.id,
            "name": self.id.replace("-", " ").title(),
            "version": version,
            "description": f"Synthetic {self.id} plugin for the validate scale benchmark.",
            "runtime": {
                "type": rng.choice(["typescript", "node"]),
                "image": f"registry.example.com/plexica/{self.id}:{version}",
                "resources": {"cpu": rng.choice(["250m", "500m", "1"]), "memory": "512Mi"},
            },
            "compat": {"core": rng.choice(CORE_RANGES)},
        }
        if self.dependencies:
            manifest["dependencies"] = [
                {"plugin": dep.id, "version": text} for dep, text in self.dependencies
            ]
        manifest["api"] = {
            "basePath": f"/api/plugins/{self.id}",
            "healthCheck": "/health",
            "readiness": "/health/ready",
            "liveness": "/health/live",
            "openapi": "/openapi.json",
            "port": 8080,
        }
        manifest["frontend"] = {
            "remoteEntry": f"https://cdn.example.com/plugins/{self.id}/remoteEntry.js",
            "routePrefix": f"/{self.id}",
            "exposes": {
                "./MainPage": "./src/pages/MainPage.tsx",
                "./SettingsPage": "./src/pages/SettingsPage.tsx",
            },
        }
        manifest["permissions"] = [
            {
                "key": key,
                "name": key.split(":", 1)[1].replace(":", " ").capitalize(),
                "description": f"Allows {key.rsplit(':', 1)[1]} on {key.split(':')[1]}.",
            }
            for key in self.permissions
        ]
        manifest["translations"] = {
            "namespaces": [self.id],
            "supportedLocales": ["en", "it", "de", "fr"],
        }
        manifest["events"] = {"publishes": self.publishes, "subscribes": self.subscribes}
        manifest["configuration"] = {"schema": self.config_schema()}
        manifest["migrations"] = {"path": "migrations"}
        spec: dict[str, Any] = {
            "state": self.state,
            "replicas": rng.randint(1, 3),
            "env": {
                "LOG_LEVEL": rng.choice(["info", "debug", "warn"]),
                "UPSTREAM_API_KEY": {"fromEnv": f"{self.table.upper()}_UPSTREAM_API_KEY"},
            },
        }
        if rng.random() < 0.2:
            spec["rollout"] = {"strategy": "blue-green", "timeoutSeconds": 180}
        spec["purgeDataOnUninstall"] = False
        spec["manifest"] = manifest
        return {
            "apiVersion": API_VERSION,
            "kind": "Plugin",
            "metadata": {"name": self.id, "labels": {"team": rng.choice(TEAMS)}},
            "spec": spec,
        }

    def migrations(self) -> dict[str, str]:
        t = self.table
        first = (
            f"CREATE TABLE {t}_items (\n"
            "    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),\n"
            "    name       text NOT NULL,\n"
            "    status     text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),\n"
            "    owner_id   uuid,\n"
            "    created_at timestamptz NOT NULL DEFAULT now(),\n"
            "    updated_at timestamptz NOT NULL DEFAULT now()\n"
            ");\n\n"
            f"CREATE INDEX {t}_items_status_idx ON {t}_items (status, updated_at);\n"
        )
        second = (
            f"CREATE TABLE {t}_events (\n"
            "    id         bigserial PRIMARY KEY,\n"
            f"    item_id    uuid NOT NULL REFERENCES {t}_items (id) ON DELETE CASCADE,\n"
            "    kind       text NOT NULL,\n"
            "    payload    jsonb NOT NULL DEFAULT '{}',\n"
            "    created_at timestamptz NOT NULL DEFAULT now()\n"
            ");\n\n"
            f"CREATE INDEX {t}_events_item_idx ON {t}_events (item_id, created_at DESC);\n"
        )
        return {f"0001_create_{t}_items.sql": first, f"0002_create_{t}_events.sql": second}


def make_plugins(count: int, rng: random.Random) -> list[PluginSpec]:
    bounds, total = [], 0.0
    for share in LEVEL_SHARE:
        total += share
        bounds.append(max(1, round(total * count)))
    plugins: list[PluginSpec] = []
    by_level: list[list[PluginSpec]] = [[] for _ in LEVEL_SHARE]
    for index in range(count):
        level = next(lv for lv, bound in enumerate(bounds) if index < bound)
        plugin = PluginSpec(index, level, rng)
        if level:
            # one dependency a level down (a chain), sometimes also on that one's own
            # dependency (billing -> crm, billing -> contacts): the closure stays a chain.
            primary = rng.choice(by_level[level - 1])
            plugin.dependencies.append((primary, primary.range_for(rng)))
            if primary.dependencies and rng.random() < 0.3:
                grand = primary.dependencies[0][0]
                plugin.dependencies.append((grand, grand.range_for(rng)))
            plugin.closure = (*primary.closure, plugin.id)
        by_level[level].append(plugin)
        plugins.append(plugin)
    # Events: subscribe to what dependencies publish, to platform topics and to a few
    # events of unrelated plugins; every subscription is published by someone.
    all_events = [e for p in plugins for e in p.publishes]
    for plugin in plugins:
        wanted: list[str] = []
        for dep, _ in plugin.dependencies:
            wanted += rng.sample(dep.publishes, min(2, len(dep.publishes)))
        if rng.random() < 0.5:
            wanted.append(rng.choice(PLATFORM_TOPICS))
        wanted += rng.sample(all_events, min(len(all_events), rng.randint(0, 2)))
        own = set(plugin.publishes)
        plugin.subscribes = list(dict.fromkeys(e for e in wanted if e not in own))
    # A few plugins nobody depends on are not active yet (or switched off).
    needed = {dep.id for p in plugins for dep, _ in p.dependencies}
    leaves = [p for p in plugins if p.id not in needed]
    for n, plugin in enumerate(rng.sample(leaves, min(len(leaves), int(count * NON_ACTIVE_SHARE)))):
        plugin.state = "installed" if n % 2 == 0 else "disabled"
    return plugins


def pick_bindings(
    rng: random.Random,
    active: list[PluginSpec],
    cum_weights: list[float],
    by_id: dict[str, PluginSpec],
    k: int,
) -> list[PluginSpec]:
    """k plugins for one tenant, closed under dependencies (deps listed first)."""
    chosen: dict[str, PluginSpec] = {}

    def offer(plugin: PluginSpec) -> None:
        missing = [pid for pid in plugin.closure if pid not in chosen]
        if len(chosen) + len(missing) <= k:
            for pid in missing:
                chosen[pid] = by_id[pid]

    for plugin in rng.choices(active, cum_weights=cum_weights, k=3 * k):
        if len(chosen) == k:
            break
        offer(plugin)
    if len(chosen) < k:  # fill with whatever fits, smallest closures first
        for plugin in sorted(active, key=lambda p: (len(p.closure), p.id)):
            if len(chosen) == k:
                break
            offer(plugin)
    if len(chosen) != k:
        raise SystemExit(f"cannot pick {k} plugins closed under dependencies for a tenant")
    return list(chosen.values())


def platform_document() -> dict[str, Any]:
    """The Platform document every generated desired state uses."""
    return {
        "apiVersion": API_VERSION,
        "kind": "Platform",
        "metadata": {"name": "bench"},
        "spec": {
            "version": CORE_VERSION,
            "runtime": {"provider": "docker", "network": "plexica", "endpointMode": "network"},
            "events": {
                "platformTopics": PLATFORM_TOPICS,
                "defaults": {
                    "partitions": 3,
                    "replicationFactor": 3,
                    "config": {"retention.ms": "604800000", "cleanup.policy": "delete"},
                },
            },
            "rollout": {
                "strategy": "rolling",
                "readyProbes": 3,
                "probeIntervalSeconds": 1,
                "timeoutSeconds": 120,
                "gracePeriodSeconds": 10,
            },
            "prune": False,
            "env": {
                "DATABASE_URL": {"fromEnv": "PLEXICA_PLUGIN_DATABASE_URL"},
                "KAFKA_BOOTSTRAP_SERVERS": {"fromEnv": "PLEXICA_KAFKA_BOOTSTRAP_SERVERS"},
            },
        },
    }


def generate(
    out: Path, plugins_n: int, tenants_n: int, per_tenant: int, seed: int
) -> dict[str, int]:
    rng = random.Random(seed)
    plugins = make_plugins(plugins_n, rng)
    active = [p for p in plugins if p.state == "active"]
    # An active plugin cannot subscribe to a publisher that is not active (the planner's
    # PGP108): drop those subscriptions, so that the generated state also plans.
    resting = {e for p in plugins if p.state != "active" for e in p.publishes}
    for plugin in active:
        plugin.subscribes = [e for e in plugin.subscribes if e not in resting]
    if per_tenant > len(active):
        raise SystemExit(
            f"--plugins-per-tenant {per_tenant} exceeds the {len(active)} active plugins"
        )

    platform_doc = platform_document()
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text(
        json.dumps({"plugins": plugins_n, "tenants": tenants_n, "k": per_tenant, "seed": seed})
    )
    (out / "platform.yaml").write_text(
        to_yaml(platform_doc, "# yaml-language-server: $schema=../schemas/platform.schema.json")
    )
    files = 1
    for plugin in plugins:
        directory = out / "plugins" / plugin.id
        (directory / "migrations").mkdir(parents=True, exist_ok=True)
        (directory / "plugin.yaml").write_text(
            to_yaml(
                plugin.document(rng),
                "# yaml-language-server: $schema=../../../schemas/plugin.schema.json",
            )
        )
        for name, sql in plugin.migrations().items():
            (directory / "migrations" / name).write_text(sql)
        files += 3

    # Popularity is skewed: a few plugins are used by most tenants (Zipf-like weights).
    order = rng.sample(active, len(active))
    cum_weights = list(itertools.accumulate(1.0 / (rank + 1) ** 0.8 for rank in range(len(order))))
    by_id = {p.id: p for p in order}
    suspended = set(rng.sample(range(tenants_n), int(tenants_n * SUSPENDED_SHARE)))
    tenants_dir = out / "tenants"
    tenants_dir.mkdir(exist_ok=True)
    header = "# yaml-language-server: $schema=../../schemas/tenant.schema.json"
    bindings = 0
    for index in range(tenants_n):
        slug = f"{WORDS[index % len(WORDS)]}-{WORDS[(index // len(WORDS)) % len(WORDS)]}-{index}"
        chosen = pick_bindings(rng, order, cum_weights, by_id, per_tenant)
        document: dict[str, Any] = {
            "apiVersion": API_VERSION,
            "kind": "Tenant",
            "metadata": {"name": slug, "labels": {"plan": rng.choice(PLANS)}},
            "spec": {
                "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "displayName": slug.replace("-", " ").title(),
                "schema": "tenant_" + slug.replace("-", "_"),
                "status": "suspended" if index in suspended else "active",
                "plugins": {
                    p.id: {"enabled": True, "configuration": p.configuration(rng, slug)}
                    for p in chosen
                },
            },
        }
        if index in suspended:
            document["metadata"]["annotations"] = {"plexica.io/suspended-reason": "unpaid invoices"}
        (tenants_dir / f"{slug}.yaml").write_text(to_yaml(document, header))
        bindings += len(chosen)
        files += 1
    return {"files_written": files, "bindings": bindings}


def prepare_out(out: Path) -> None:
    """Refuse to overwrite a directory this script did not generate."""
    if out.exists():
        if not out.is_dir():
            raise SystemExit(f"--out {out} is a file")
        if any(out.iterdir()):
            if not (out / MARKER).exists():
                raise SystemExit(
                    f"--out {out} is not empty and was not generated by this script; "
                    "refusing to overwrite it"
                )
            shutil.rmtree(out)


# --------------------------------------------------------------------------- measuring


def _import_package() -> None:
    """Measure the checkout this script lives in, whatever copy is pip-installed; a copy
    named on PYTHONPATH still wins (that is how another revision is measured)."""
    named = [entry for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep) if entry]
    sys.path.insert(1 + len(named), str(REPO_ROOT))  # after the script dir and PYTHONPATH


def _rss_mb(maxrss: int) -> float:
    # ru_maxrss is kilobytes on Linux, bytes on macOS
    return maxrss / (1024 * 1024) if sys.platform == "darwin" else maxrss / 1024


def child_measure(root: Path, mode: str, top: int) -> None:
    """Runs in the child process; prints one JSON object (or a profile) on stdout."""
    _import_package()
    import plexica_gitops.desired.build as desired_module
    from plexica_gitops.desired.build import build_desired_state
    from plexica_gitops.desired.schemas import kind_validator
    from plexica_gitops.desired.validate import validate_build, validate_directory
    from plexica_gitops.source.loader import load_directory

    for kind in ("Platform", "Plugin", "Tenant"):  # schema generation is a one-off start-up cost
        kind_validator(kind)
    baseline = _rss_mb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)

    def stages(around: Any) -> tuple[Any, int, int]:
        """validate_directory's three stages; `around(name, call)` runs each one."""
        loaded = around("load", lambda: load_directory(root))

        def replay(_root: Path, *_: Any, _loaded: Any = loaded, **__: Any) -> Any:
            """The build reads files one at a time: hand it the loaded ones, per file."""
            from plexica_gitops.source.loader import LoadedFile

            by_file: dict[str, tuple[list[Any], list[Any]]] = {f: ([], []) for f in _loaded.files}
            for document in _loaded.documents:
                by_file[document.file][0].append(document)
            for finding in _loaded.findings:
                if finding.location and finding.location.file in by_file:
                    by_file[finding.location.file][1].append(finding)
            for file, (documents, findings) in by_file.items():
                yield LoadedFile(file, documents, findings, listed=True)

        original = desired_module.iter_directory
        desired_module.iter_directory = replay  # type: ignore[assignment]
        try:
            built = around("build", lambda: build_desired_state(root))
        finally:
            desired_module.iter_directory = original  # type: ignore[assignment]
        documents, yaml_files = len(loaded.documents), len(loaded.files)
        del loaded  # as in validate_directory, only what the build kept stays alive
        report = around("rules", lambda: validate_build(built))
        return report, documents, yaml_files

    documents: int | None = None
    if mode == "profile":
        import cProfile
        import io
        import pstats

        profilers: dict[str, cProfile.Profile] = {}
        seconds: dict[str, float] = {}

        def profiled(name: str, call: Any) -> Any:
            profilers[name] = profiler = cProfile.Profile()
            start = time.perf_counter()
            try:
                return profiler.runcall(call)
            finally:
                seconds[name] = time.perf_counter() - start

        report, _, _ = stages(profiled)
        stream = io.StringIO()
        shown = ", ".join(f"{name} {value:.1f} s" for name, value in seconds.items())
        stream.write(
            f"cProfile of validate_directory's stages ({shown}; "
            f"{len(report.errors)} errors, {len(report.findings)} findings)\n"
        )
        combined = pstats.Stats(*profilers.values(), stream=stream)
        stream.write(f"\n=== all stages, top {top} by cumulative time\n")
        combined.sort_stats("cumulative").print_stats(top)
        stream.write(f"\n=== all stages, top {top} by own time\n")
        combined.sort_stats("tottime").print_stats(top)
        for name in ("build", "rules"):
            stream.write(f"\n=== {name} stage only, top {top} by cumulative time\n")
            stats = pstats.Stats(profilers[name], stream=stream)
            stats.sort_stats("cumulative").print_stats(top)
        text = stream.getvalue()
        for directory, label in (
            (Path(yaml.__file__).parent.parent, "site-packages"),
            (Path(desired_module.__file__).parent.parent, "."),
            (Path(sys.prefix) / "lib", "lib"),
        ):
            text = text.replace(str(directory) + os.sep, label + os.sep)
        print(text)
        return

    if mode == "direct":
        start, cpu_start = time.perf_counter(), time.process_time()
        report = validate_directory(root)
        total = time.perf_counter() - start
        figures: dict[str, Any] = {
            "total_s": total,
            "total_cpu_s": time.process_time() - cpu_start,
        }
        desired = report.desired
    else:
        wall: dict[str, float] = {}
        cpu: dict[str, float] = {}
        peak: dict[str, float] = {}  # the child's peak RSS once each stage has finished

        def timed(name: str, call: Any) -> Any:
            start, cpu_start = time.perf_counter(), time.process_time()
            try:
                return call()
            finally:
                wall[name] = time.perf_counter() - start
                cpu[name] = time.process_time() - cpu_start
                peak[name] = _rss_mb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)

        report, documents, yaml_files = stages(timed)
        desired = report.desired
        figures = {f"{name}_s": value for name, value in wall.items()}
        figures |= {f"{name}_cpu_s": value for name, value in cpu.items()}
        figures |= {f"rss_after_{name}_mb": value for name, value in peak.items()}
        figures["total_s"] = sum(wall.values())
        figures["total_cpu_s"] = sum(cpu.values())
        figures["yaml_files"] = yaml_files
    errors = report.errors
    import plexica_gitops

    figures.update(
        {
            "package": str(Path(plexica_gitops.__file__).parent),
            "files": len(desired.files),
            "documents": documents,
            "plugins": len(desired.plugins),
            "tenants": len(desired.tenants),
            "bindings": sum(len(t.document.spec.plugins) for t in desired.tenants.values()),
            "errors": len(errors),
            "findings": len(report.findings),
            "first_errors": [f"{f.code} {f.location}: {f.message}" for f in errors[:20]],
            "baseline_rss_mb": baseline,
            "child_self_peak_rss_mb": _rss_mb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss),
        }
    )
    print(json.dumps(figures))


def describe_source(package: str) -> str:
    """`<dir> @ <commit>[+dirty]`: other people edit the package while benchmarks run."""
    try:
        head = subprocess.run(
            ["git", "-C", package, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", package, "status", "--porcelain", "--", "."],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return f"{package} (not a git checkout)"
    return f"{package} @ {head}{' + uncommitted changes' if dirty else ''}"


def run_child(root: Path, mode: str, top: int = 15) -> tuple[str, float]:
    """Run a measurement child; returns its stdout and the children's peak RSS so far."""
    command = [sys.executable, str(Path(__file__).resolve()), "--_child", str(root),
               "--_mode", mode, "--_top", str(top)]  # fmt: skip
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        sys.stderr.write(completed.stderr)
        raise SystemExit(f"measurement child failed (exit {completed.returncode})")
    peak = _rss_mb(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    return completed.stdout, peak


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Generate a large desired state and measure `validate` on it."
    )
    parser.add_argument("--plugins", type=int, default=200)
    parser.add_argument("--tenants", type=int, default=5000)
    parser.add_argument("--plugins-per-tenant", type=int, default=20, metavar="K")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, help="generate here and keep it (default: a temp dir)")
    parser.add_argument("--json", action="store_true", help="print one JSON object only")
    parser.add_argument(
        "--direct",
        action="store_true",
        help="also time one unsplit validate_directory() call, in its own child process",
    )
    parser.add_argument(
        "--profile",
        type=int,
        nargs="?",
        const=15,
        default=0,
        metavar="N",
        help="also profile the three stages with cProfile (own child): top N functions "
        "overall by cumulative and by own time, then top N of build and of rules alone "
        "(default N: 15)",
    )
    parser.add_argument("--_child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--_mode", default="phased", help=argparse.SUPPRESS)
    parser.add_argument("--_top", type=int, default=15, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args._child is not None:
        child_measure(args._child, args._mode, args._top)
        return 0

    temp: tempfile.TemporaryDirectory[str] | None = None
    if args.out is not None:
        root = args.out
        prepare_out(root)
    else:
        temp = tempfile.TemporaryDirectory(prefix="plexica-validate-scale-")
        root = Path(temp.name)
    try:
        start = time.perf_counter()
        generated = generate(root, args.plugins, args.tenants, args.plugins_per_tenant, args.seed)
        generate_s = time.perf_counter() - start
        size_mb = sum(f.stat().st_size for f in root.rglob("*") if f.is_file()) / 1e6

        stdout, peak_rss = run_child(root, "phased")
        figures = json.loads(stdout)
        result: dict[str, Any] = {
            "params": {
                "plugins": args.plugins,
                "tenants": args.tenants,
                "plugins_per_tenant": args.plugins_per_tenant,
                "seed": args.seed,
            },
            "generate_s": generate_s,
            "size_mb": size_mb,
            **{k: v for k, v in figures.items() if k != "first_errors"},
            "bindings_per_s": figures["bindings"] / figures["total_s"],
            "peak_rss_mb": peak_rss,
            "rss_method": "getrusage(RUSAGE_CHILDREN).ru_maxrss of the measuring child",
            "python": platform.python_version(),
            "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs",
        }
        if figures["errors"]:
            sys.stderr.write(f"generated state is INVALID: {figures['errors']} errors\n")
            for line in figures["first_errors"]:
                sys.stderr.write(f"  {line}\n")
            return 1
        expected_bindings = args.tenants * args.plugins_per_tenant
        assert figures["bindings"] == expected_bindings, (figures["bindings"], expected_bindings)
        assert figures["plugins"] == args.plugins and figures["tenants"] == args.tenants
        assert figures["files"] == generated["files_written"], (figures["files"], generated)

        if args.direct:
            stdout, _ = run_child(root, "direct")
            direct = json.loads(stdout)
            result["direct_total_s"] = direct["total_s"]
            result["direct_total_cpu_s"] = direct["total_cpu_s"]
            result["direct_peak_rss_mb"] = direct["child_self_peak_rss_mb"]

        # after the measurements: git runs as a child too (RUSAGE_CHILDREN is a maximum)
        result["measured"] = describe_source(result.pop("package"))
        if args.json:
            print(json.dumps(result, indent=2))
        else:
            print_table(result)
        if args.profile:
            stdout, _ = run_child(root, "profile", args.profile)
            out = sys.stderr if args.json else sys.stdout
            out.write("\n" + stdout)
        return 0
    finally:
        if temp is not None:
            temp.cleanup()


def print_table(r: dict[str, Any]) -> None:
    p = r["params"]
    print(
        f"validate scale: {p['plugins']} plugins x {p['tenants']} tenants x "
        f"{p['plugins_per_tenant']} plugins/tenant (seed {p['seed']}); "
        f"generated {r['size_mb']:.1f} MB in {r['generate_s']:.1f} s"
    )
    rows = [
        ("files", f"{r['files']:,}  ({r['yaml_files']:,} YAML)"),
        ("documents", f"{r['documents']:,}"),
        ("bindings", f"{r['bindings']:,}"),
        ("load s", f"{r['load_s']:.2f}  (CPU {r['load_cpu_s']:.2f})"),
        ("build s", f"{r['build_s']:.2f}  (CPU {r['build_cpu_s']:.2f})"),
        ("rules s", f"{r['rules_s']:.2f}  (CPU {r['rules_cpu_s']:.2f})"),
        ("total s", f"{r['total_s']:.2f}  (CPU {r['total_cpu_s']:.2f})"),
        (
            "peak RSS MB",
            f"{r['peak_rss_mb']:.0f}  (peak so far after imports {r['baseline_rss_mb']:.0f}, "
            f"load {r['rss_after_load_mb']:.0f}, build {r['rss_after_build_mb']:.0f}, "
            f"rules {r['rss_after_rules_mb']:.0f})",
        ),
        ("bindings/s", f"{r['bindings_per_s']:,.0f}"),
        ("findings", f"{r['findings']} ({r['errors']} errors)"),
    ]
    if "direct_total_s" in r:
        rows.append(
            (
                "direct total s",
                f"{r['direct_total_s']:.2f}  (CPU {r['direct_total_cpu_s']:.2f}; one "
                "validate_directory call, "
                f"peak RSS {r['direct_peak_rss_mb']:.0f} MB)",
            )
        )
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    print(f"  ({r['machine']}, Python {r['python']}; RSS = {r['rss_method']})")
    print(f"  (plexica_gitops: {r['measured']})")


if __name__ == "__main__":
    sys.exit(main())
