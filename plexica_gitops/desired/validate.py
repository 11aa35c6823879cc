"""Semantic validation of a desired state: every rule has a stable code (see README).

Structural problems (YAML, schema, files) are found while the desired state is built
(`desired.py`); the rules here look across documents: identities, versions and ranges,
lifecycle consistency, routes, resources, permissions, events, tenants and secrets.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from graphlib import CycleError, TopologicalSorter
from pathlib import Path, PurePosixPath
from typing import Any, Protocol
from urllib.parse import urlsplit

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, UnknownType
from jsonschema.exceptions import ValidationError as SchemaValidationError
from referencing.exceptions import Unresolvable

from plexica_gitops.desired.build import (
    BuildResult,
    DesiredState,
    PluginEntry,
    build_desired_state,
    configuration_digest,
)
from plexica_gitops.desired.fastcheck import FastCheck, compile_fast_check
from plexica_gitops.desired.model import PluginState
from plexica_gitops.desired.peers import cidr_problem, kind_problem, labels_problem
from plexica_gitops.desired.versions import (
    RangeSyntaxError,
    VersionRange,
    VersionSyntaxError,
    parse_range,
    parse_version,
)
from plexica_gitops.desired.view import POLICY_IGNORED_BY
from plexica_gitops.findings import Finding, Location, error, warning
from plexica_gitops.lifecycle import NEEDED_BY, TARGET_STATUS
from plexica_gitops.quantities import MAX_CPU_CORES, QuantityError, parse_cpu, parse_memory
from plexica_gitops.sensitive import (
    has_credentials,
    is_reference,
    looks_secret,
    mask,
    names_secret,
)
from plexica_gitops.source.cache import Cache
from plexica_gitops.source.loader import OUT_OF_MEMORY
from plexica_gitops.source.tree import SourceTree

# Every pattern is matched against the WHOLE text (`fullmatch`; `$` would accept a trailing
# newline) with ASCII classes: an identifier is exactly these characters, nothing else.
KEBAB_ID = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*", re.ASCII)
SAFE_SCHEMA = re.compile(r"[a-z_][a-z0-9_]*", re.ASCII)
CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
PERMISSION_KEY = re.compile(r"[a-z][a-z0-9-]*(?::[a-z0-9*-]+)+", re.ASCII)
EVENT_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9._-]{0,248}", re.ASCII)
# Docker's reference grammar (distribution/reference): [domain[:port]/]path[:tag][@digest].
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
IMAGE_REFERENCE = re.compile(
    rf"(?:{_DOMAIN}(?:\.{_DOMAIN})*(?::[0-9]{{1,5}})?/)?{_COMPONENT}(?:/{_COMPONENT})*"
    r"(?::\w[\w.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*"
    r":[0-9a-fA-F]{32,})?",
    re.ASCII,
)
MAX_IMAGE_LENGTH = 512
# An HTTP path on the plugin's port: RFC 3986 path characters (and a query), nothing that
# could end the request line.
HTTP_PATH = re.compile(r"/[A-Za-z0-9\-._~!$&'()*+,;=:@%/?]*", re.ASCII)
URL_TEXT = re.compile(r"[!-~]+", re.ASCII)  # printable ASCII, no space
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}", re.ASCII)
# A secretRef names a file `<dir>/<name>/<key>`: each one path component, never `..`.
SECRET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,252}", re.ASCII)
SECRET_KEY = re.compile(r"(?!\.\.?\Z)[A-Za-z0-9_.-]{1,253}", re.ASCII)
TOPIC_CONFIG_NAME = re.compile(r"[a-z][a-z0-9.]{0,253}", re.ASCII)
MAX_TOPIC_CONFIG_VALUE = 1024
MIN_MEMORY_BYTES = 6 * 2**20  # Docker refuses a memory limit under 6 MiB
MAX_NAME_LENGTH = 63  # DNS label: plugin ids and slugs become container and k8s names
# Schema names the platform owns or PostgreSQL reserves; a tenant must never be given one.
RESERVED_SCHEMAS = {"public", "information_schema", "plexica", "plexica_gitops"}
RESERVED_WORDS = {
    "all", "analyse", "analyze", "and", "any", "array", "as", "asc", "both", "case", "cast",
    "check", "collate", "column", "constraint", "create", "default", "desc", "distinct", "do",
    "else", "end", "except", "false", "for", "foreign", "from", "grant", "group", "having",
    "in", "initially", "intersect", "into", "leading", "limit", "not", "null", "offset", "on",
    "only", "or", "order", "placing", "primary", "references", "returning", "select", "some",
    "table", "then", "to", "trailing", "true", "union", "unique", "user", "using", "when",
    "where", "window", "with",
}  # fmt: skip
# What a tenant may enable. `disabled` is a pause: the tenants' intent stays in git and the
# plan holds their bindings off until the plugin is active again. A plugin that never
# served (registered, installed) or is going away (absent) cannot be enabled: PGV604.
ENABLEABLE_STATES = frozenset({PluginState.ACTIVE, PluginState.DISABLED})
# What a plugin's own desired state requires of each plugin it depends on: the lifecycle's
# NEEDED_BY, read in desired states.
REQUIRED_DEPENDENCY_STATES: dict[PluginState, set[PluginState]] = {
    state: {other for other in PluginState if TARGET_STATUS[other] in NEEDED_BY[target]}
    for state in PluginState
    if (target := TARGET_STATUS[state]) in NEEDED_BY
}


JsonPathParts = tuple[str | int, ...]
Subjects = tuple[str, ...]
# where, the path of the value, the value, who it concerns, and (a tenant's configuration
# read with a cache) its `configuration_digest`
_Place = tuple[Callable[..., Location], JsonPathParts, Any, Subjects, str | None]


@dataclass
class ValidationReport:
    desired: DesiredState
    findings: list[Finding]

    @property
    def valid(self) -> bool:
        return not any(f.is_error for f in self.findings)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.is_error]


# Peak memory of `validate` (RSS, interpreter included) over the size of the desired state,
# as measured on a 250 MB state (README); the out-of-memory finding quotes it.
MEMORY_FACTOR = 6


class SettingIssue(Protocol):
    """One unusable runtime setting as a provider's settings check reports it
    (runtime.provider.SettingProblem): `key` is its key in platform.yaml `spec.runtime`."""

    @property
    def key(self) -> str: ...
    @property
    def message(self) -> str: ...
    @property
    def hint(self) -> str: ...


# The problems provider `name` finds in its settings, or None when no provider of that name
# is installed (runtime.provider.check_provider_settings).
SettingsCheck = Callable[[str, Mapping[str, Any]], Sequence[SettingIssue] | None]

# The check used when a caller passes none: runtime/provider.py registers the real one when
# it is imported (validation sits below the runtime, so it cannot import it).
_registered: list[SettingsCheck] = []


def register_settings_check(check: SettingsCheck) -> None:
    """Make `check` the runtime-settings check of every validation that is given none."""
    _registered[:] = [check]


def validate_directory(
    source: Path | SourceTree,
    settings_check: SettingsCheck | None = None,
    cache: Cache | None = None,
) -> ValidationReport:
    """Build and check a desired-state directory, or a git commit's tree (GitTree).
    `settings_check` checks the runtime provider's settings (default: the registered one).
    With a `cache`, what an earlier run built and checked of the same files is reused (the
    findings are the same: source/cache.py)."""
    try:
        report = validate_build(build_desired_state(source, cache), settings_check)
        if cache is not None:
            cache.finish()
        return report
    except MemoryError:
        pass  # leave the handler first: its traceback still holds what filled the memory
    return _out_of_memory(source if isinstance(source, Path) else Path(source.root_label))


def _out_of_memory(root: Path) -> ValidationReport:
    """A report with one finding, so that every command says what happened and what to
    do, instead of printing a MemoryError traceback."""
    finding = error(
        OUT_OF_MEMORY,
        "not enough memory to validate this desired state; nothing was checked",
        f"validate needs about {MEMORY_FACTOR}x the size of the desired state in memory: "
        "run it where more memory is available (a larger runner, a higher container "
        "memory limit), or split the desired state into several repositories.",
        Location("."),
    )
    empty = DesiredState(root, None, {}, {}, revision="", files=[])
    return ValidationReport(empty, [finding])


def validate_build(
    built: BuildResult, settings_check: SettingsCheck | None = None
) -> ValidationReport:
    findings = list(built.findings)
    repaired = built.repaired
    for rule in RULES:
        findings.extend(f for f in rule(built.desired) if f.location not in repaired)
    settings = check_runtime_settings(built.desired, settings_check)
    findings.extend(f for f in settings if f.location not in repaired)
    findings = [_with_owner(f) for f in findings]
    unique = {(f.code, f.location, f.message): f for f in findings}
    return ValidationReport(built.desired, sorted(unique.values(), key=Finding.sort_key))


def _with_owner(finding: Finding) -> Finding:
    """A finding in a plugin's or a tenant's file that names nobody (a YAML error, a
    document that is not even a Plugin) names the file's owner by the layout convention:
    `plugins/<id>/…` is plugin <id>, `tenants/<slug>.yaml` tenant <slug>."""
    if finding.subjects or finding.location is None:
        return finding
    parts = PurePosixPath(finding.location.file).parts
    owner = ""
    if len(parts) > 2 and parts[0] == "plugins":
        owner = parts[1]
    elif len(parts) == 2 and parts[0] == "tenants" and parts[1].lower().endswith(_YAML):
        owner = parts[1].rsplit(".", 1)[0]
    return dataclasses.replace(finding, subjects=(owner,)) if owner else finding


_YAML = (".yaml", ".yml")


def _clip(text: str, limit: int = 80) -> str:
    """At most `limit` characters of `text` for a message (a value may be megabytes)."""
    return text if len(text) <= limit else text[:limit] + "…"


# --- identities --------------------------------------------------------------------------


def check_plugin_ids(desired: DesiredState) -> Iterator[Finding]:
    for plugin in desired.plugins.values():
        if not KEBAB_ID.fullmatch(plugin.id) or len(plugin.id) > MAX_NAME_LENGTH:
            yield error(
                "PGV201",
                f"plugin id {plugin.id!r} is not kebab-case",
                "Use lowercase letters, digits and single hyphens, starting with a letter, "
                f"at most {MAX_NAME_LENGTH} characters (e.g. `crm`, `sales-pipeline`).",
                plugin.location("metadata", "name"),
                (plugin.id,),
            )


def check_tenant_identities(desired: DesiredState) -> Iterator[Finding]:
    ids: dict[str, str] = {}
    schemas: dict[str, str] = {}
    for slug, tenant in sorted(desired.tenants.items()):
        spec = tenant.document.spec
        if not KEBAB_ID.fullmatch(slug) or len(slug) > MAX_NAME_LENGTH:
            yield error(
                "PGV208",
                f"tenant slug {slug!r} is not kebab-case",
                "Use lowercase letters, digits and single hyphens, starting with a letter.",
                tenant.location("metadata", "name"),
                (slug,),
            )
        # positions only for a finding (a tenant from the cache keeps them packed)
        yield from _tenant_id(slug, spec.id, _LazyLocation(tenant.location, ("spec", "id")), ids)
        where = _LazyLocation(tenant.location, ("spec", "schema"))
        yield from _tenant_schema(slug, spec.schema_name, where)
        other = schemas.setdefault(spec.schema_name, slug)
        if other != slug:
            yield error(
                "PGV205",
                f"tenants {other!r} and {slug!r} both use schema {spec.schema_name!r}",
                "Each tenant needs its own PostgreSQL schema; rename one.",
                tenant.location("spec", "schema"),
                (other, slug),
            )


def _tenant_id(
    slug: str, raw: str, where: Callable[[], Location], seen: dict[str, str]
) -> Iterator[Finding]:
    canonical = raw.lower()
    if not CANONICAL_UUID.fullmatch(canonical):
        yield error(
            "PGV207",
            f"tenant {slug!r} has id {raw!r}, which is not a UUID",
            "Use a UUID such as 6f1c2d3e-4b5a-4c6d-8e7f-901234567890 (`uuidgen` makes one).",
            where(),
            (slug,),
        )
        return
    other = seen.setdefault(canonical, slug)
    if other != slug:
        yield error(
            "PGV204",
            f"tenants {other!r} and {slug!r} have the same id {canonical}",
            "Tenant ids must be unique; give one tenant a new UUID.",
            where(),
            (other, slug),
        )


def _tenant_schema(slug: str, name: str, where: Callable[[], Location]) -> Iterator[Finding]:
    unsafe = (
        not SAFE_SCHEMA.fullmatch(name)
        or len(name) > MAX_NAME_LENGTH
        or name.startswith("pg_")
        or name in RESERVED_SCHEMAS
        or name in RESERVED_WORDS
    )
    if unsafe:
        yield error(
            "PGV206",
            f"tenant {slug!r} has schema name {name!r}, which is not a safe PostgreSQL identifier",
            "Use lowercase letters, digits and underscores, starting with a letter or "
            "underscore, at most 63 characters, not `pg_*`, `public` or a reserved word "
            "(e.g. `tenant_acme`).",
            where(),
            (slug,),
        )


# --- versions and ranges -----------------------------------------------------------------


def check_versions(desired: DesiredState) -> Iterator[Finding]:
    platform = desired.platform
    if platform is not None:
        yield from _semver(
            platform.document.spec.version, platform.location("spec", "version"), "platform", ()
        )
    for plugin in desired.plugins.values():
        version = plugin.manifest.version
        where = plugin.manifest_location("version")
        yield from _semver(version, where, f"plugin {plugin.id!r}", (plugin.id,))
        yield from _image(plugin)


def _semver(text: str, where: Location, what: str, subjects: tuple[str, ...]) -> Iterator[Finding]:
    try:
        parse_version(text)
    except VersionSyntaxError as exc:
        yield error(
            "PGV301",
            f"{what} version {text!r} is not a semantic version: {exc}",
            "Use MAJOR.MINOR.PATCH, e.g. 1.2.0 (a pre-release like 1.2.0-rc.1 is fine).",
            where,
            subjects,
        )


def _image(plugin: PluginEntry) -> Iterator[Finding]:
    image = plugin.manifest.runtime.image
    where = plugin.manifest_location("runtime", "image")
    subjects = (plugin.id,)
    if len(image) > MAX_IMAGE_LENGTH or not IMAGE_REFERENCE.fullmatch(image):
        yield error(
            "PGV309",
            f"plugin {plugin.id!r} image {_clip(image)!r} is not an image reference",
            "Write [registry[:port]/]path[:tag][@sha256:digest] in lowercase, e.g. "
            f"`registry.example.com/plexica/{plugin.id}:{_clip(plugin.manifest.version)}`.",
            where,
            subjects,
        )
        return
    if "@" in image:  # pinned by digest: the tag, if any, is informational
        return
    last = image.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else None
    if tag is None or tag == "latest":
        yield warning(
            "PGV303",
            f"plugin {plugin.id!r} uses image {image!r}, which floats (`latest`)",
            f"Tag the image with the manifest version (`:{plugin.manifest.version}`) or pin "
            "a digest, so a plan means the same thing when it is applied.",
            where,
            subjects,
        )
        return
    if tag not in (plugin.manifest.version, "v" + plugin.manifest.version):
        yield error(
            "PGV302",
            f"plugin {plugin.id!r} image tag {tag!r} does not match manifest version "
            f"{plugin.manifest.version!r}",
            f"Use `:{plugin.manifest.version}` as the tag, or pin the image by digest "
            "(`image@sha256:…`).",
            where,
            subjects,
        )


def _range(
    text: str, where: Location, what: str, subjects: tuple[str, ...]
) -> tuple[VersionRange | None, list[Finding]]:
    try:
        return parse_range(text), []
    except RangeSyntaxError as exc:
        return None, [
            error(
                "PGV304",
                f"{what} range {text!r} is not a valid version range: {exc}",
                "Use npm-style ranges: ^1.2.0, ~1.2, 1.x, >=2.1 <3.0, or alternatives "
                "joined by ||.",
                where,
                subjects,
            )
        ]


def _installed_version(plugin: PluginEntry) -> str | None:
    try:
        parse_version(plugin.manifest.version)
    except VersionSyntaxError:
        return None
    return plugin.manifest.version


def check_dependencies(desired: DesiredState) -> Iterator[Finding]:
    for plugin in desired.plugins.values():
        for index, dependency in enumerate(plugin.manifest.dependencies):
            where = plugin.manifest_location("dependencies", index)
            subjects = (plugin.id, dependency.plugin)
            required, found = _range(
                dependency.version,
                plugin.manifest_location("dependencies", index, "version"),
                f"plugin {plugin.id!r} dependency on {dependency.plugin!r}:",
                subjects,
            )
            yield from found
            target = desired.plugins.get(dependency.plugin)
            if target is None and dependency.plugin in desired.unbuilt_plugins:
                continue  # declared; the finding that rejected it is what to fix
            if target is None:
                yield error(
                    "PGV306",
                    f"plugin {plugin.id!r} depends on {dependency.plugin!r}, which is not "
                    "declared in this repository",
                    f"Add plugins/{dependency.plugin}/plugin.yaml, or remove the dependency.",
                    where,
                    subjects,
                )
                continue
            version = _installed_version(target)
            if required is None or version is None or required.contains(version):
                continue
            yield error(
                "PGV305",
                f"plugin {plugin.id!r} requires {dependency.plugin} {dependency.version}, "
                f"but {dependency.plugin} is {version}",
                f"Change the range, or move {dependency.plugin} to a version in "
                f"{dependency.version}.",
                plugin.manifest_location("dependencies", index, "version"),
                subjects,
            )


def check_core_compat(desired: DesiredState) -> Iterator[Finding]:
    platform = desired.platform
    for plugin in desired.plugins.values():
        compat = plugin.manifest.compat
        if compat is None:
            continue
        where = plugin.manifest_location("compat", "core")
        required, found = _range(
            compat.core, where, f"plugin {plugin.id!r} compat.core", (plugin.id,)
        )
        yield from found
        if required is None or platform is None:
            continue
        version = platform.document.spec.version
        try:
            satisfied = required.contains(version)
        except VersionSyntaxError:
            continue  # reported by check_versions
        if not satisfied:
            yield error(
                "PGV307",
                f"plugin {plugin.id!r} supports core {compat.core}, but the platform is {version}",
                "Upgrade the platform, or use a plugin version built for this core.",
                where,
                (plugin.id,),
            )


def check_dependency_cycles(desired: DesiredState) -> Iterator[Finding]:
    if not _has_dependency_cycle(desired):
        return
    # networkx only to name a cycle: importing it costs every `validate` and `plan` a
    # quarter of a second, and almost every desired state has no cycle (issue 15).
    import networkx as nx

    graph = nx.DiGraph()
    for plugin in desired.plugins.values():
        for dependency in plugin.manifest.dependencies:
            if dependency.plugin in desired.plugins:
                graph.add_edge(plugin.id, dependency.plugin)
    for component in sorted(nx.strongly_connected_components(graph), key=min):
        if len(component) == 1 and not graph.has_edge(*(2 * tuple(component))):
            continue
        start = min(component)
        cycle = _shortest_cycle(graph.subgraph(component), start)
        first = desired.plugins[start]
        index = next(
            i
            for i, d in enumerate(first.manifest.dependencies)
            if d.plugin == cycle[1 % len(cycle)]
        )
        yield error(
            "PGV308",
            "dependency cycle: " + " → ".join([*cycle, cycle[0]]),
            "Plugins install in dependency order, so a cycle can never install; remove "
            "one of these dependencies.",
            first.manifest_location("dependencies", index),
            tuple(sorted(component)),
        )


def _has_dependency_cycle(desired: DesiredState) -> bool:
    """Whether some plugins of the desired state depend on each other in a cycle."""
    depends_on = {
        plugin.id: [d.plugin for d in plugin.manifest.dependencies if d.plugin in desired.plugins]
        for plugin in desired.plugins.values()
    }
    try:
        TopologicalSorter(depends_on).prepare()
    except CycleError:
        return True
    return False


def _shortest_cycle(component: Any, start: str) -> list[str]:
    """A real cycle through `start`: the shortest way back to it from one of its successors
    (in a strongly connected component there always is one)."""
    import networkx as nx  # only with a cycle to name (check_dependency_cycles)

    if component.has_edge(start, start):
        return [start]
    paths = [nx.shortest_path(component, nxt, start) for nxt in sorted(component.successors(start))]
    return [start, *min(paths, key=len)[:-1]]


def check_lifecycle(desired: DesiredState) -> Iterator[Finding]:
    for plugin in desired.plugins.values():
        state = plugin.document.spec.state
        allowed = REQUIRED_DEPENDENCY_STATES.get(state)
        if allowed is None:
            continue
        for index, dependency in enumerate(plugin.manifest.dependencies):
            target = desired.plugins.get(dependency.plugin)
            if target is None or target.document.spec.state in allowed:
                continue
            yield error(
                "PGV401",
                f"plugin {plugin.id!r} is desired {state.value} but its dependency "
                f"{dependency.plugin!r} is desired {target.document.spec.state.value}",
                f"Set {dependency.plugin} to "
                + " or ".join(sorted(s.value for s in allowed))
                + f", or change {plugin.id}'s state.",
                plugin.manifest_location("dependencies", index),
                (plugin.id, dependency.plugin),
            )


# --- routes, resources, permissions, events ----------------------------------------------


def check_routes(desired: DesiredState) -> Iterator[Finding]:
    for plugin in desired.plugins.values():
        api = plugin.manifest.api
        expected = f"/api/plugins/{plugin.id}"
        if api.base_path.rstrip("/") != expected:
            yield error(
                "PGV501",
                f"plugin {plugin.id!r} api.basePath is {api.base_path!r}",
                f"Spec 004 FR-012: the backend prefix is `{expected}`.",
                plugin.manifest_location("api", "basePath"),
                (plugin.id,),
            )
        for field_name, alias in [
            ("health_check", "healthCheck"),
            ("readiness", "readiness"),
            ("liveness", "liveness"),
            ("openapi", "openapi"),
        ]:
            path = getattr(api, field_name)
            problem = None if path is None else _http_path_problem(path)
            if problem is not None:
                yield error(
                    "PGV509",
                    f"plugin {plugin.id!r} api.{alias} {_clip(path)!r} {problem}",
                    "Write it as a path on the plugin's port, e.g. `/health/ready`: it starts "
                    "with `/` and holds no spaces, line breaks or non-ASCII characters "
                    "(percent-encode them).",
                    plugin.manifest_location("api", alias),
                    (plugin.id,),
                )
        frontend = plugin.manifest.frontend
        if frontend is None:
            continue
        if frontend.route_prefix.rstrip("/") != f"/{plugin.id}":
            yield error(
                "PGV502",
                f"plugin {plugin.id!r} frontend.routePrefix is {frontend.route_prefix!r}",
                f"Spec 004 FR-012: the front-end prefix is `/{plugin.id}`.",
                plugin.manifest_location("frontend", "routePrefix"),
                (plugin.id,),
            )
        try:
            entry = urlsplit(frontend.remote_entry)
        except ValueError:  # "http://[x": an address no browser could load either
            entry = urlsplit("")
        if (
            entry.scheme not in ("http", "https")
            or not entry.netloc
            or len(frontend.remote_entry) > 2048
            or not URL_TEXT.fullmatch(frontend.remote_entry)
        ):
            yield error(
                "PGV510",
                f"plugin {plugin.id!r} frontend.remoteEntry {_clip(frontend.remote_entry)!r} "
                "is not an http(s) URL",
                "Module Federation loads remoteEntry.js by URL, e.g. "
                f"https://cdn.example.com/plugins/{plugin.id}/remoteEntry.js.",
                plugin.manifest_location("frontend", "remoteEntry"),
                (plugin.id,),
            )


def _http_path_problem(path: str) -> str | None:
    if not path.startswith("/"):
        return "is not an absolute path"
    if len(path) > 2048 or not HTTP_PATH.fullmatch(path):
        return "holds characters an HTTP request path cannot (spaces, line breaks, non-ASCII)"
    return None


def check_resources(desired: DesiredState) -> Iterator[Finding]:
    for plugin in desired.plugins.values():
        resources = plugin.manifest.runtime.resources
        if resources.cpu is not None:
            problem = _quantity_problem(parse_cpu, resources.cpu)
            if problem is not None:
                yield error(
                    "PGV503",
                    f"plugin {plugin.id!r} runtime.resources.cpu: {problem}",
                    "Use millicores (`500m`), whole cores (`2`) or fractional cores (`1.5`), "
                    f"at most {MAX_CPU_CORES} cores.",
                    plugin.manifest_location("runtime", "resources", "cpu"),
                    (plugin.id,),
                )
        if resources.memory is not None:
            problem = _quantity_problem(parse_memory, resources.memory)
            if problem is None and parse_memory(resources.memory) < MIN_MEMORY_BYTES:
                problem = f"memory quantity {resources.memory!r} is under 6Mi"
            if problem is not None:
                yield error(
                    "PGV504",
                    f"plugin {plugin.id!r} runtime.resources.memory: {problem}",
                    "Use `512Mi`, `1Gi` (binary) or `500M`, `2G` (decimal), from 6Mi (the "
                    "least a container engine starts a container with) to 1Ti.",
                    plugin.manifest_location("runtime", "resources", "memory"),
                    (plugin.id,),
                )


def check_autoscaling(desired: DesiredState) -> Iterator[Finding]:
    """`spec.autoscaling` must leave the autoscaler a range: min ≤ max, and a `replicas`
    written beside it inside that range (it only seeds the count the autoscaler owns)."""
    for plugin in desired.plugins.values():
        spec = plugin.document.spec
        scaling = spec.autoscaling
        if scaling is None:
            continue
        if scaling.min_replicas > scaling.max_replicas:
            yield error(
                "PGV516",
                f"plugin {plugin.id!r} autoscaling: minReplicas {scaling.min_replicas} is "
                f"above maxReplicas {scaling.max_replicas}",
                "Set minReplicas ≤ maxReplicas (both from 1 to 100).",
                plugin.location("spec", "autoscaling", "minReplicas"),
                (plugin.id,),
            )
        elif "replicas" in spec.model_fields_set and not (
            scaling.min_replicas <= spec.replicas <= scaling.max_replicas
        ):
            yield error(
                "PGV516",
                f"plugin {plugin.id!r}: replicas {spec.replicas} is outside its autoscaling "
                f"range {scaling.min_replicas}..{scaling.max_replicas}",
                "Leave `replicas` out (the autoscaler owns the count) or set it within "
                "minReplicas..maxReplicas.",
                plugin.location("spec", "replicas"),
                (plugin.id,),
            )


def check_egress(desired: DesiredState) -> Iterator[Finding]:
    """Each `spec.network.egress` destination is pods by labels or a network, in the
    syntax a NetworkPolicy accepts."""
    for plugin in desired.plugins.values():
        for index, rule in enumerate(plugin.document.spec.network.egress):
            selects = rule.pod_labels is not None or rule.namespace_labels is not None
            problem = (
                kind_problem(selects, rule.cidr)
                or labels_problem(rule.pod_labels)
                or labels_problem(rule.namespace_labels)
                or (cidr_problem(rule.cidr) if rule.cidr is not None else None)
            )
            if problem is None:
                continue
            yield error(
                "PGV517",
                f"plugin {plugin.id!r} network.egress[{index}]: {problem}",
                "Name pods by `podLabels` (and their namespaces by `namespaceLabels`), or "
                "a network by `cidr` (e.g. 10.0.0.0/8), with `ports` and `protocols`.",
                plugin.location("spec", "network", "egress", index),
                (plugin.id,),
            )


# What each provider that ships with plexica-gitops cannot do of the Plugin kind.
# What a provider that ignores autoscaling and egress (desired.view.POLICY_IGNORED_BY, which
# the planner reads too) does instead.
_IGNORED = {
    "autoscaling": "runs `replicas` containers and never autoscales",
    "network": "does not restrict where a container connects (network.egress is not enforced)",
}


def check_provider_support(desired: DesiredState) -> Iterator[Finding]:
    """A warning for what a plugin declares that the platform's runtime provider ignores
    (docker: autoscaling, egress), so nobody believes it is enforced."""
    platform = desired.platform
    provider = platform.document.spec.runtime.provider if platform else ""
    unsupported = _IGNORED if provider in POLICY_IGNORED_BY else {}
    for plugin in desired.plugins.values():
        spec = plugin.document.spec
        declared = {
            "autoscaling": spec.autoscaling is not None,
            "network": bool(spec.network.egress),
        }
        for key, what in unsupported.items():
            if not declared[key]:
                continue
            yield warning(
                "PGV518",
                f"plugin {plugin.id!r} declares {key}, which the {provider} runtime provider "
                f"ignores: it {what}",
                f"Run the platform on a provider that supports it (kubernetes), or remove "
                f"spec.{key} from the plugin.",
                plugin.location("spec", key),
                (plugin.id,),
            )


def _quantity_problem(parse: Callable[[str], int], text: str) -> str | None:
    try:
        parse(text)
    except QuantityError as exc:
        return str(exc)
    return None


def check_permissions(desired: DesiredState) -> Iterator[Finding]:
    owners: dict[str, tuple[PluginEntry, int]] = {}
    for plugin_id in sorted(desired.plugins):
        plugin = desired.plugins[plugin_id]
        for index, permission in enumerate(plugin.manifest.permissions):
            where = plugin.manifest_location("permissions", index, "key")
            key = permission.key
            if not PERMISSION_KEY.fullmatch(key):
                yield error(
                    "PGV506",
                    f"plugin {plugin_id!r} permission key {key!r} is malformed",
                    f"Use `{plugin_id}:<resource>:<action>`, e.g. `{plugin_id}:deals:read`.",
                    where,
                    (plugin_id,),
                )
            elif not key.startswith(plugin_id + ":"):
                yield warning(
                    "PGV506",
                    f"plugin {plugin_id!r} permission key {key!r} is not namespaced by the "
                    "plugin id",
                    f"Prefix it with `{plugin_id}:` so keys of different plugins cannot clash.",
                    where,
                    (plugin_id,),
                )
            owner, first_index = owners.setdefault(key, (plugin, index))
            if owner is plugin and first_index == index:
                continue
            yield error(
                "PGV505",
                f"permission {key!r} is declared by {owner.id!r} and {plugin_id!r}"
                if owner is not plugin
                else f"permission {key!r} is declared twice by {plugin_id!r}",
                "Permission keys are unique across plugins (spec 004 edge case 6): the "
                "second install would fail. Rename one.",
                where,
                (owner.id, plugin_id) if owner is not plugin else (plugin_id,),
            )


def check_events(desired: DesiredState) -> Iterator[Finding]:
    platform_topics = (
        set(desired.platform.document.spec.events.platform_topics) if desired.platform else set()
    )
    if desired.platform is not None:
        for index, topic in enumerate(desired.platform.document.spec.events.platform_topics):
            if not EVENT_NAME.fullmatch(topic):
                yield error(
                    "PGV511",
                    f"platform topic {_clip(topic)!r} is not a valid topic name",
                    "Use letters, digits, `.`, `_` and `-`, e.g. `core.tenant.created`.",
                    desired.platform.location("spec", "events", "platformTopics", index),
                )
    publishers: dict[str, str] = {}
    for plugin_id in sorted(desired.plugins):
        plugin = desired.plugins[plugin_id]
        for index, event in enumerate(plugin.manifest.events.publishes):
            where = plugin.manifest_location("events", "publishes", index)
            yield from _event_name(event, where, plugin_id)
            if event in plugin.manifest.events.publishes[:index]:
                yield error(
                    "PGV508",
                    f"plugin {plugin_id!r} lists event {event!r} twice in events.publishes",
                    "Remove the repeated entry.",
                    where,
                    (plugin_id,),
                )
                continue
            owner = publishers.setdefault(event, plugin_id)
            if event in platform_topics or owner != plugin_id:
                other = "the platform" if event in platform_topics else repr(owner)
                yield error(
                    "PGV508",
                    f"event {event!r} is published by {other} and by {plugin_id!r}",
                    "Each topic has one owner (it is created and purged with it); rename "
                    "the event or let one plugin publish it.",
                    where,
                    (plugin_id,) if event in platform_topics else (owner, plugin_id),
                )
    for plugin_id in sorted(desired.plugins):
        plugin = desired.plugins[plugin_id]
        for event in sorted(plugin.document.spec.topics):
            if event in plugin.manifest.events.publishes:
                continue
            yield error(
                "PGV512",
                f"plugin {plugin_id!r} sets topic settings for {event!r}, which it does not "
                "publish",
                "Topic settings belong to the publishing plugin: fix the event name, or add "
                "it to manifest.events.publishes.",
                plugin.location("spec", "topics", event),
                (plugin_id,),
            )
        for index, event in enumerate(plugin.manifest.events.subscribes):
            if event in publishers or event in platform_topics or _publishers_unknown(desired):
                continue
            yield error(
                "PGV507",
                f"plugin {plugin_id!r} subscribes to {event!r}, which no plugin publishes "
                "and is not a platform topic",
                "Fix the event name, add the publishing plugin, or list it in the "
                "platform's events.platformTopics.",
                plugin.manifest_location("events", "subscribes", index),
                (plugin_id,),
            )


def _publishers_unknown(desired: DesiredState) -> bool:
    """A platform or plugin that was declared but not built may publish anything."""
    return desired.platform_unbuilt or bool(desired.unbuilt_plugins)


def _event_name(event: str, where: Location, plugin_id: str) -> Iterator[Finding]:
    if not EVENT_NAME.fullmatch(event):
        yield error(
            "PGV511",
            f"plugin {plugin_id!r} publishes {_clip(event)!r}, which is not a valid topic name",
            "Use letters, digits, `.`, `_` and `-`, e.g. `crm.deal.won`.",
            where,
            (plugin_id,),
        )


# Kafka topic configs whose value is a number or one of a few words (Kafka's TopicConfig):
# checked here, so a typo fails `validate` instead of the topic's create at apply.
_LONG = (-1, 2**63 - 1)  # -1: unlimited
_TOPIC_NUMBERS: dict[str, tuple[int, int]] = {
    "retention.ms": _LONG,
    "retention.bytes": _LONG,
    "local.retention.ms": (-2, 2**63 - 1),
    "local.retention.bytes": (-2, 2**63 - 1),
    "segment.ms": (1, 2**63 - 1),
    "segment.jitter.ms": (0, 2**63 - 1),
    "delete.retention.ms": (0, 2**63 - 1),
    "min.compaction.lag.ms": (0, 2**63 - 1),
    "max.compaction.lag.ms": (1, 2**63 - 1),
    "file.delete.delay.ms": (0, 2**63 - 1),
    "flush.messages": (1, 2**63 - 1),
    "flush.ms": (0, 2**63 - 1),
    "message.timestamp.difference.max.ms": (0, 2**63 - 1),
    "message.timestamp.before.max.ms": (0, 2**63 - 1),
    "message.timestamp.after.max.ms": (0, 2**63 - 1),
    "segment.bytes": (14, 2**31 - 1),
    "segment.index.bytes": (4, 2**31 - 1),
    "index.interval.bytes": (0, 2**31 - 1),
    "max.message.bytes": (0, 2**31 - 1),
    "min.insync.replicas": (1, 2**31 - 1),
}
_TOPIC_WORDS: dict[str, frozenset[str]] = {
    "cleanup.policy": frozenset({"delete", "compact", "compact,delete", "delete,compact"}),
    "compression.type": frozenset({"uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"}),
    "message.timestamp.type": frozenset({"CreateTime", "LogAppendTime"}),
    "unclean.leader.election.enable": frozenset({"true", "false"}),
    "preallocate": frozenset({"true", "false"}),
    "message.downconversion.enable": frozenset({"true", "false"}),
}
_INTEGER = re.compile(r"-?[0-9]{1,19}", re.ASCII)


def check_topic_configs(desired: DesiredState) -> Iterator[Finding]:
    places: list[tuple[dict[str, str], Callable[..., Location], JsonPathParts, Subjects]] = []
    if desired.platform is not None:
        defaults = desired.platform.document.spec.events.defaults
        base: JsonPathParts = ("spec", "events", "defaults", "config")
        places.append((defaults.config, desired.platform.location, base, ()))
    for plugin_id in sorted(desired.plugins):
        plugin = desired.plugins[plugin_id]
        for event, overrides in plugin.document.spec.topics.items():
            base = ("spec", "topics", event, "config")
            places.append((overrides.config, plugin.location, base, (plugin_id,)))
    for config, locate, base, subjects in places:
        for name, value in config.items():
            problem = _topic_config_problem(name, value)
            if problem is None:
                continue
            yield error(
                "PGV513",
                f"topic config `{_clip(name)}` {problem}",
                "Use Kafka's topic config names (lowercase, dotted) and values as Kafka "
                "writes them: numbers in plain ASCII digits (`604800000`), "
                "`cleanup.policy: delete`.",
                locate(*base, name),
                subjects,
            )


def _topic_config_problem(name: str, value: str) -> str | None:
    if not TOPIC_CONFIG_NAME.fullmatch(name):
        return "is not a topic config name"
    if len(value) > MAX_TOPIC_CONFIG_VALUE or not value.isprintable():
        return "has a value with line breaks or control characters, or over 1,024 characters"
    bounds = _TOPIC_NUMBERS.get(name)
    if bounds is not None:
        low, high = bounds
        if not _INTEGER.fullmatch(value) or not low <= int(value) <= high:
            return f"is {_clip(value)!r}; it takes a whole number from {low} to {high:,}"
    words = _TOPIC_WORDS.get(name)
    if words is not None and value not in words:
        return f"is {_clip(value)!r}; it takes one of: {', '.join(sorted(words))}"
    return None


# --- tenants -----------------------------------------------------------------------------


def _configuration_checkers(
    desired: DesiredState,
) -> tuple[dict[str, _ConfigurationChecker | None], list[Finding]]:
    """A checker per plugin; None (and a PGV601 finding) where the schema is invalid."""
    checkers: dict[str, _ConfigurationChecker | None] = {}
    findings = []
    for pid, entry in sorted(desired.plugins.items()):
        schema = entry.manifest.configuration.schema_
        exc = _checked_schema(json.dumps(schema, sort_keys=True, default=str), desired.cache)
        if exc is not None:
            checkers[pid] = None
            findings.append(
                error(
                    "PGV601",
                    f"plugin {pid!r} configuration.schema is not a valid JSON Schema: "
                    f"{exc.message}",
                    "Fix the schema (JSON Schema draft 2020-12).",
                    entry.manifest_location("configuration", "schema", *exc.path),
                    (pid,),
                )
            )
            continue
        checker = _ConfigurationChecker(schema, compile_fast_check(schema))
        if desired.cache is not None:
            checker.use_cache(desired.cache)
        checkers[pid] = checker
    return checkers, findings


def _checked_schema(schema_text: str, cache: Cache | None) -> SchemaError | None:
    """`_schema_error`, remembered in the cache for a schema that passed (the error of one
    that failed is found again: its message and path are the finding)."""
    if cache is None:
        return _schema_error(schema_text)
    key = cache.key("schema", schema_text.encode("utf-8", "surrogatepass"))
    if cache.get("schema", key) == "valid":
        return None
    exc = _schema_error(schema_text)
    if exc is None:
        cache.put("schema", key, "valid")
    return exc


@functools.lru_cache(maxsize=256)
def _schema_error(schema_text: str) -> SchemaError | None:
    """The meta-schema check of one configuration schema (by its canonical JSON): the
    slowest part of validating a small desired state, and the same schemas come back on
    every run in one process (tests, a language server)."""
    try:
        Draft202012Validator.check_schema(json.loads(schema_text))
    except SchemaError as exc:
        return exc
    return None


def check_tenant_plugins(desired: DesiredState) -> Iterator[Finding]:
    validators, findings = _configuration_checkers(desired)
    yield from findings
    for slug, tenant in sorted(desired.tenants.items()):
        bindings = tenant.document.spec.plugins
        digests = tenant.configuration_digests
        for plugin_id, binding in bindings.items():
            # a position only for a finding: a tenant read from the cache keeps its
            # positions packed until one is needed
            where = _LazyLocation(tenant.location, ("spec", "plugins", plugin_id))
            plugin = desired.plugins.get(plugin_id)
            if plugin is None and plugin_id in desired.unbuilt_plugins:
                continue  # declared; the finding that rejected it is what to fix
            if plugin is None:
                yield error(
                    "PGV603",
                    f"tenant {slug!r} configures plugin {plugin_id!r}, which is not declared",
                    f"Add plugins/{plugin_id}/plugin.yaml, or remove it from this tenant.",
                    where(),
                    (slug, plugin_id),
                )
                continue
            validator = validators[plugin_id]
            if validator is not None:
                digest = None if digests is None else digests.get(plugin_id)
                yield from _tenant_configuration(
                    desired, slug, plugin, validator, binding.configuration, digest
                )
            if not binding.enabled:
                continue
            state = plugin.document.spec.state
            if state not in ENABLEABLE_STATES:
                yield error(
                    "PGV604",
                    f"tenant {slug!r} enables plugin {plugin_id!r}, which is desired "
                    f"{state.value}, not active",
                    f"Set plugins/{plugin_id} to `state: active` (or `disabled`, to hold it "
                    "off for now), or set `enabled: false`.",
                    where(),
                    (slug, plugin_id),
                )
            for dependency in plugin.manifest.dependencies:
                dep = bindings.get(dependency.plugin)
                if dep is None or not dep.enabled:
                    yield error(
                        "PGV605",
                        f"tenant {slug!r} enables {plugin_id!r} without its dependency "
                        f"{dependency.plugin!r}",
                        f"Enable {dependency.plugin} for this tenant too.",
                        where(),
                        (slug, plugin_id, dependency.plugin),
                    )
    for checker in validators.values():
        if checker is not None:
            checker.save()


@dataclass(frozen=True, slots=True)
class _LazyLocation:
    locate: Callable[..., Location]
    path: JsonPathParts

    def __call__(self) -> Location:
        return self.locate(*self.path)


class _ConfigurationChecker:
    """One plugin's configuration schema. Tenants often share a configuration (the empty
    one above all), so each distinct configuration is checked once."""

    def __init__(self, schema: dict[str, Any], fast: FastCheck | None = None) -> None:
        self.validator = Draft202012Validator(schema)
        # answers "valid" only where jsonschema finds nothing: the exact problems (and
        # their messages) are computed for the others alone
        self.fast = fast
        self.broken = False  # cannot be evaluated: reported once, then skipped
        # digest of a configuration's JSON (keys in their order: a message may list them)
        # -> its problems: a digest, not the text, so that remembering a configuration
        # costs bytes, not its size again
        self.seen: dict[bytes, list[SchemaValidationError]] = {}
        # With a cache: `configuration_digest` -> the problems (path, message) found in
        # the configuration, for this schema (its key); `changed`: some to write back.
        self.cache: Cache | None = None
        self.key = ""
        self.stored: dict[str, list[_Problem]] = {}
        self.changed = False

    def use_cache(self, cache: Cache) -> None:
        self.cache = cache
        self.key = cache.key("configuration", json.dumps(self.validator.schema).encode())
        self.stored = _stored_problems(cache.get("configuration", self.key))

    def save(self) -> None:
        if self.cache is None or not self.changed:
            return
        valid = [digest for digest, found in self.stored.items() if not found]
        invalid = {
            digest: [[list(path), message] for path, message in found]
            for digest, found in self.stored.items()
            if found
        }
        self.cache.put("configuration", self.key, {"valid": valid, "invalid": invalid})

    def outcome(self, configuration: dict[str, Any], digest: str | None) -> list[_Problem]:
        """The problems of `configuration`, sorted by path: from the cache when it was
        checked against this schema before (`digest` is its `configuration_digest`)."""
        if self.cache is not None:
            digest = digest or configuration_digest(configuration)
            known = self.stored.get(digest)
            if known is not None:
                return known
        problems = sorted(
            self.problems(configuration), key=lambda e: list(map(str, e.absolute_path))
        )
        found = [(tuple(problem.absolute_path), _redacted_message(problem)) for problem in problems]
        found = found or _NO_PROBLEM_LIST
        if self.cache is not None and digest is not None:
            self.stored[digest] = found
            self.changed = True
        return found

    def problems(self, configuration: dict[str, Any]) -> list[SchemaValidationError]:
        if self.fast is not None and self.fast.valid(configuration):
            return _NO_PROBLEMS
        text = json.dumps(configuration, default=str)
        key = hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
        found = self.seen.get(key)
        if found is None:
            found = [
                problem
                for problem in self.validator.iter_errors(configuration)
                if not _reference_accepted(self.validator, problem)
            ] or _NO_PROBLEMS
            self.seen[key] = found
        return found


_NO_PROBLEMS: list[SchemaValidationError] = []  # shared, never changed
_Problem = tuple[JsonPathParts, str]  # where in a configuration, the (redacted) message
_NO_PROBLEM_LIST: list[_Problem] = []  # shared, never changed


def _stored_problems(plain: Any) -> dict[str, list[_Problem]]:
    """A configuration cache entry's problems; nothing of an entry not of that shape."""
    if not isinstance(plain, dict) or plain.keys() != {"valid", "invalid"}:
        return {}
    valid, invalid = plain["valid"], plain["invalid"]
    if not isinstance(valid, list) or not isinstance(invalid, dict):
        return {}
    if not all(isinstance(digest, str) for digest in valid):
        return {}
    stored: dict[str, list[_Problem]] = dict.fromkeys(valid, _NO_PROBLEM_LIST)
    for digest, found in invalid.items():
        if not isinstance(found, list):
            return {}
        problems: list[_Problem] = []
        for item in found:
            if not (isinstance(item, list) and len(item) == 2 and isinstance(item[1], str)):
                return {}
            path, message = item
            if not isinstance(path, list) or not all(
                isinstance(part, str) or (type(part) is int and part >= 0) for part in path
            ):
                return {}
            problems.append((tuple(path), message))
        stored[digest] = problems
    return stored


def _tenant_configuration(
    desired: DesiredState,
    slug: str,
    plugin: PluginEntry,
    checker: _ConfigurationChecker,
    configuration: dict[str, Any],
    digest: str | None = None,
) -> Iterator[Finding]:
    if checker.broken:
        return
    try:
        problems = checker.outcome(configuration, digest)
    except OverflowError:  # an int past 1e308 against a float multipleOf: the value's fault
        yield error(
            "PGV602",
            f"tenant {slug!r} configuration of {plugin.id!r} cannot be checked: a number in "
            "it is too large to compare (beyond 1e308)",
            f"Use a smaller number, as {plugin.id}'s configuration.schema "
            f"({plugin.manifest_location('configuration', 'schema')}) expects.",
            desired.tenants[slug].location("spec", "plugins", plugin.id, "configuration"),
            (slug, plugin.id),
        )
        return
    except (UnknownType, Unresolvable, RecursionError) as exc:
        checker.broken = True
        # Schemas that pass the meta-schema but cannot be evaluated: a $ref to nowhere, or
        # one that refers to itself without consuming the value (`$ref: "#"`).
        reason = (
            "a $ref refers back to itself"
            if isinstance(exc, RecursionError)
            else str(exc).splitlines()[0]
        )
        yield error(
            "PGV601",
            f"plugin {plugin.id!r} configuration.schema cannot be evaluated: {reason}",
            "Fix the schema (JSON Schema draft 2020-12): every $ref must resolve inside it.",
            plugin.manifest_location("configuration", "schema"),
            (plugin.id,),
        )
        return
    tenant = desired.tenants[slug]
    for where, message in problems:
        path = ("spec", "plugins", plugin.id, "configuration", *where)
        yield error(
            "PGV602",
            f"tenant {slug!r} configuration of {plugin.id!r} is invalid at "
            f"`{'.'.join(map(str, where)) or '(top)'}`: "
            f"{message}",
            f"Fix the value to match {plugin.id}'s configuration.schema "
            f"({plugin.manifest_location('configuration', 'schema')}).",
            tenant.location(*path),
            (slug, plugin.id),
        )


def _reference_accepted(validator: Draft202012Validator, problem: SchemaValidationError) -> bool:
    """A reference resolves to a string at apply time: where the schema takes a string, a
    reference is fine even though the schema does not describe reference objects."""
    if not is_reference(problem.instance):
        return False
    return bool(validator.evolve(schema=problem.schema).is_valid("<reference>"))


def _redacted_message(problem: SchemaValidationError) -> str:
    """jsonschema's message, which quotes the offending value: shown (clipped) so the user
    sees what is wrong, but never a secret - nothing of a value under a secret-looking key
    or one the schema marks secret (`writeOnly`, `format: password`), and values under
    secret-looking keys or URLs with a password inside a shown mapping or list masked."""
    schema: Any = problem.schema
    marked = isinstance(schema, dict) and (
        schema.get("writeOnly") is True or schema.get("format") == "password"
    )
    if marked or any(
        isinstance(part, str) and looks_secret(part) for part in problem.absolute_path
    ):
        return f"the value (not shown) fails the schema's `{problem.validator}` rule"
    instance = problem.instance
    written = repr(instance)
    if written not in problem.message:
        return problem.message
    return problem.message.replace(written, _clip(repr(mask(instance, credentials=True))))


def _secret_literals(value: Any, path: tuple[str | int, ...]) -> Iterator[tuple[str | int, ...]]:
    """Paths under secret-looking keys that hold a literal string instead of a reference."""
    if isinstance(value, dict):
        if is_reference(value):
            return
        for key, item in value.items():
            if looks_secret(key) and _holds_literal(key, item):
                yield (*path, key)
            else:
                yield from _secret_literals(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _secret_literals(item, (*path, index))


def _holds_literal(key: str, value: Any) -> bool:
    """A value written in git under a secret-looking key. Strings always count; numbers and
    non-reference mappings count when the key names a secret (`apiToken: 12345678`); a list
    counts when any item does."""
    if isinstance(value, str):
        return bool(value)
    if isinstance(value, bool) or value is None:
        return False
    if isinstance(value, list):
        return any(_holds_literal(key, item) for item in value)
    if isinstance(value, dict) and is_reference(value):
        return False
    return names_secret(key)


def _credential_urls(value: Any, path: tuple[str | int, ...]) -> Iterator[tuple[str | int, ...]]:
    if isinstance(value, str):
        if has_credentials(value):
            yield path
    elif isinstance(value, dict) and not is_reference(value):
        for key, item in value.items():
            yield from _credential_urls(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _credential_urls(item, (*path, index))


def _env_places(desired: DesiredState) -> Iterator[_Place]:
    """Where values that may be references live: the platform's and each plugin's env (as
    written), each tenant binding's configuration."""
    if desired.platform is not None:
        env = desired.platform.source.data.get("spec", {}).get("env", {})
        yield desired.platform.location, ("spec", "env"), env, (), None
    for plugin in desired.plugins.values():
        env = plugin.source.data.get("spec", {}).get("env", {})
        yield plugin.location, ("spec", "env"), env, (plugin.id,), None
    for slug, tenant in desired.tenants.items():
        digests = tenant.configuration_digests or {}
        for plugin_id, binding in tenant.document.spec.plugins.items():
            config_path = ("spec", "plugins", plugin_id, "configuration")
            subjects = (slug, plugin_id)
            digest = digests.get(plugin_id)
            yield tenant.location, config_path, binding.configuration, subjects, digest


class _CleanConfigurations:
    """The configurations (by `configuration_digest`) in which a rule found nothing, kept in
    the cache: what the rule finds depends on the configuration alone, so a configuration
    found clean before is not walked again."""

    def __init__(self, desired: DesiredState, rule: str) -> None:
        self.cache = desired.cache
        self.key = "" if self.cache is None else self.cache.key("clean", rule.encode())
        known = None if self.cache is None else self.cache.get("clean", self.key)
        valid = isinstance(known, list) and all(isinstance(d, str) for d in known)
        self.known: set[str] = set(known) if valid and isinstance(known, list) else set()
        self.seen: set[str] = set()

    def known_clean(self, digest: str | None) -> bool:
        if digest is None or digest not in self.known:
            return False
        self.seen.add(digest)
        return True

    def found_clean(self, digest: str | None) -> None:
        if digest is not None:
            self.seen.add(digest)

    def save(self) -> None:
        """Add this run's clean configurations to those known; once the known ones are
        four times this run's, forget those this run did not see."""
        if self.cache is None or self.seen <= self.known:
            return
        kept = self.known | self.seen
        if len(kept) > 4 * len(self.seen):
            kept = self.seen
        self.cache.put("clean", self.key, sorted(kept))


def check_secrets(desired: DesiredState) -> Iterator[Finding]:
    clean = _CleanConfigurations(desired, "check_secrets")
    for locate, base, value, subjects, digest in _env_places(desired):
        if clean.known_clean(digest):
            continue
        found = False
        for path in _secret_literals(value, ()):
            found = True
            yield error(
                "PGV701",
                f"`{'.'.join(map(str, (*base, *path)))}` holds a literal secret (value not shown)",
                "Never commit secrets (spec 004 NFR-006): write `{fromEnv: NAME}` or "
                "`{secretRef: {name: …, key: …}}`, then remove the value from git history.",
                locate(*base, *path),
                subjects,
            )
        for path in _credential_urls(value, ()):
            found = True
            yield error(
                "PGV702",
                f"`{'.'.join(map(str, (*base, *path)))}` is a URL with a password in it "
                "(value not shown)",
                "Move the whole URL to a reference: `{fromEnv: NAME}`, then remove it from "
                "git history.",
                locate(*base, *path),
                subjects,
            )
        if not found:
            clean.found_clean(digest)
    clean.save()


def check_runtime_settings(
    desired: DesiredState, check: SettingsCheck | None = None
) -> Iterator[Finding]:
    """The runtime provider's own settings, checked by the provider's settings hook at
    `validate` time (a finding at the setting's line, not a failure at apply). Without a
    check (none given, none registered) nothing is claimed: the settings are reported
    not checked."""
    platform = desired.platform
    if platform is None:
        return
    runtime = platform.document.spec.runtime
    settings = {key: value for key, value in (runtime.model_extra or {}).items()}
    check = check or next(iter(_registered), None)
    if check is None:
        yield warning(
            "PGV515",
            f"runtime provider {_clip(runtime.provider)!r}: its settings were not checked "
            "(no provider settings check was loaded)",
            "Validate with the plexica-gitops command, which loads the installed providers.",
            platform.location("spec", "runtime", "provider"),
        )
        return
    problems = check(runtime.provider, settings)
    if problems is None:
        yield warning(
            "PGV515",
            f"runtime provider {_clip(runtime.provider)!r} is not installed here, so its "
            "settings were not checked",
            "Install the package that provides it where `validate` runs (apply needs it "
            "too), or fix spec.runtime.provider.",
            platform.location("spec", "runtime", "provider"),
        )
        return
    for problem in problems:
        yield error(
            "PGV514",
            problem.message,
            problem.hint,
            platform.location("spec", "runtime", problem.key),
        )


def check_env(desired: DesiredState) -> Iterator[Finding]:
    """Env names go to the container as `NAME=value`; a `fromEnv` names a variable of the
    apply process; a `secretRef` names the file `<secrets dir>/<name>/<key>`. Each must be
    exactly a name: never a path that leaves the secrets directory."""
    clean = _CleanConfigurations(desired, "check_env")
    for locate, base, value, subjects, digest in _env_places(desired):
        if clean.known_clean(digest):
            continue
        found = False
        if isinstance(value, dict):
            for name in value:
                if not ENV_NAME.fullmatch(name):
                    found = True
                    yield error(
                        "PGV703",
                        f"env variable name {_clip(name)!r} is not a valid name",
                        "Use letters, digits and `_`, not starting with a digit "
                        "(e.g. `SMTP_HOST`).",
                        locate(*base, name),
                        subjects,
                    )
        for path, reference in _references(value):
            where = _LazyLocation(locate, (*base, *path))  # positions only for a finding
            for finding in _reference_problems(reference, where, subjects):
                found = True
                yield finding
        if not found:
            clean.found_clean(digest)
    clean.save()


def _reference_problems(
    reference: dict[str, Any], where: Callable[[], Location], subjects: Subjects
) -> Iterator[Finding]:
    if "fromEnv" in reference:
        name = reference["fromEnv"]
        if not ENV_NAME.fullmatch(name):
            yield error(
                "PGV703",
                f"`fromEnv: {_clip(name)!r}` is not a valid environment variable name",
                "Name a variable of the apply process: letters, digits and `_`, not starting "
                "with a digit.",
                where(),
                subjects,
            )
        return
    secret = reference["secretRef"]
    if not SECRET_NAME.fullmatch(secret["name"]) or not SECRET_KEY.fullmatch(secret["key"]):
        yield error(
            "PGV704",
            f"`secretRef` {{name: {_clip(secret['name'])!r}, key: {_clip(secret['key'])!r}}} "
            "is not a secret name and key",
            "A secret is read from <secrets dir>/<name>/<key>: name and key are each one "
            "name of letters, digits, `.`, `_` and `-` (no `/`, not `.` or `..`).",
            where(),
            subjects,
        )


def _references(value: Any) -> Iterator[tuple[JsonPathParts, dict[str, Any]]]:
    """Every `{fromEnv}` / `{secretRef}` in `value`, with its path; iterative, since a
    configuration may be nested as deep as the loader allows."""
    stack: list[tuple[JsonPathParts, Any]] = [((), value)]
    while stack:
        path, item = stack.pop()
        if is_reference(item):
            yield path, item
        elif isinstance(item, dict):
            stack.extend(((*path, key), child) for key, child in reversed(item.items()))
        elif isinstance(item, list):
            stack.extend(
                ((*path, index), child) for index, child in reversed(list(enumerate(item)))
            )


RULES: list[Callable[[DesiredState], Iterator[Finding]]] = [
    check_plugin_ids,
    check_tenant_identities,
    check_versions,
    check_dependencies,
    check_core_compat,
    check_dependency_cycles,
    check_lifecycle,
    check_routes,
    check_resources,
    check_autoscaling,
    check_egress,
    check_provider_support,
    check_permissions,
    check_events,
    check_topic_configs,
    check_tenant_plugins,
    check_secrets,
    check_env,
]  # then check_runtime_settings, with the settings check the caller gives
