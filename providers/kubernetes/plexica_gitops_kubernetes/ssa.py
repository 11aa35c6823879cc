"""Server-side apply and reads against the Kubernetes API, one verb per function (in the
manner of Flux's `ssa` package), on the official client's ApiClient (its configuration,
authentication and connection pool) with plain JSON in and out.

Objects stay dicts: what is applied is exactly what the builders made, and what is read
is exactly what the API answered (no client model renaming fields or dropping unknown
ones). Failures are ProviderErrors: 5xx answers and lost connections are transient (apply
retries them), a 409 of an apply is an `ApplyConflict` naming each field and its manager.

`project` and `differences` are the drift comparison: the apply's (or dry-run's) answer
projected onto the fields we set (so defaults and other managers' fields do not count,
and quantities are compared as the API normalised them), against the live object.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes.client import ApiClient

from plexica_gitops.runtime.provider import ProviderError

APPLY = "application/apply-patch+yaml"
METADATA_ONLY = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
_CONFLICT = re.compile(r'conflict with "(?P<manager>[^"]+)"(?: with subresource "(?P<sub>[^"]+)")?')


@dataclass(frozen=True, slots=True)
class Kind:
    api_version: str
    kind: str
    plural: str
    namespaced: bool = True

    def path(self, namespace: str | None, name: str | None = None) -> str:
        base = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        if self.namespaced and namespace is not None:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        return f"{base}/{name}" if name else base


DEPLOYMENT = Kind("apps/v1", "Deployment", "deployments")
REPLICA_SET = Kind("apps/v1", "ReplicaSet", "replicasets")
SERVICE = Kind("v1", "Service", "services")
SECRET = Kind("v1", "Secret", "secrets")
CONFIG_MAP = Kind("v1", "ConfigMap", "configmaps")
POD = Kind("v1", "Pod", "pods")
EVENT = Kind("v1", "Event", "events")
NAMESPACE = Kind("v1", "Namespace", "namespaces", namespaced=False)
SERVICE_ACCOUNT = Kind("v1", "ServiceAccount", "serviceaccounts")
NETWORK_POLICY = Kind("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies")
AUTOSCALER = Kind("autoscaling/v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers")
DISRUPTION_BUDGET = Kind("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets")
KINDS = {
    k.kind: k
    for k in (
        DEPLOYMENT,
        REPLICA_SET,
        SERVICE,
        SECRET,
        CONFIG_MAP,
        POD,
        EVENT,
        NAMESPACE,
        SERVICE_ACCOUNT,
        NETWORK_POLICY,
        AUTOSCALER,
        DISRUPTION_BUDGET,
    )
}


def kind_of(obj: Mapping[str, Any]) -> Kind:
    return KINDS[obj["kind"]]


def ref(obj: Mapping[str, Any]) -> str:
    """`Kind/name`, how objects are named in messages and the inventory."""
    return f"{obj['kind']}/{obj['metadata']['name']}"


@dataclass(frozen=True, slots=True)
class Conflict:
    """A field of an apply that another field manager owns."""

    field: str  # as the API writes it: .spec.replicas
    manager: str
    subresource: str = ""
    operation: str = ""  # Apply or Update, from the live object's managedFields

    def describe(self) -> str:
        via = f" (subresource {self.subresource})" if self.subresource else ""
        how = f", by {self.operation}" if self.operation else ""
        return f"{self.field} is owned by field manager {self.manager!r}{via}{how}"


class ApplyConflict(ProviderError):
    def __init__(self, obj: str, conflicts: Sequence[Conflict]) -> None:
        super().__init__(f"{obj}: " + "; ".join(c.describe() for c in conflicts))
        self.obj = obj
        self.conflicts = list(conflicts)


@dataclass(frozen=True, slots=True)
class Connection:
    """An ApiClient and how long one request may take."""

    api: ApiClient
    timeout: float = 30.0
    server: str = ""


# --- requests ------------------------------------------------------------------------------


def _send(
    conn: Connection,
    method: str,
    path: str,
    *,
    query: Sequence[tuple[str, str]] = (),
    body: Any = None,
    content_type: str | None = None,
    accept: str = "application/json",
    timeout: float | None = None,
) -> Any:
    headers = {"Accept": accept}
    if content_type:
        headers["Content-Type"] = content_type
    request = conn.api.param_serialize(
        method=method,
        resource_path=path,
        query_params=list(query),
        header_params=headers,
        body=body,
        auth_settings=["BearerToken"],
    )
    try:
        return conn.api.call_api(*request, _request_timeout=timeout or conn.timeout)
    except (urllib3.exceptions.HTTPError, OSError) as error:
        raise ProviderError(
            f"cannot reach the Kubernetes API at {conn.server or 'the configured server'} "
            f"({method} {path}): {type(error).__name__}: {error}",
            "check the cluster (and spec.runtime.kubeconfig / context in platform.yaml)",
            transient=True,
        ) from error


def _json(conn: Connection, method: str, path: str, **options: Any) -> Any:
    """One request; the answer's JSON. Raises `_Status` for an error answer."""
    response = _send(conn, method, path, **options)
    try:
        data = response.read()
    except (urllib3.exceptions.HTTPError, OSError) as error:
        raise ProviderError(
            f"the Kubernetes API broke off its answer to {method} {path}: {error}",
            "retried automatically",
            transient=True,
        ) from error
    finally:
        response.response.release_conn()
    document = json.loads(data) if data else {}
    if not 200 <= response.status <= 299:
        raise _Status(response.status, document, f"{method} {path}")
    return document


class _Status(Exception):
    def __init__(self, status: int, body: Any, doing: str) -> None:
        super().__init__(doing)
        self.status = status
        self.body = body if isinstance(body, dict) else {}
        self.doing = doing

    @property
    def message(self) -> str:
        return str(self.body.get("message") or f"HTTP {self.status}")

    def error(self) -> ProviderError:
        transient = self.status >= 500 or self.status == 429
        return ProviderError(
            f"the Kubernetes API refused {self.doing}: {self.message}",
            "retried automatically" if transient else "",
            transient=transient,
        )


def get(conn: Connection, kind: Kind, namespace: str | None, name: str) -> dict[str, Any] | None:
    """The object, or None when there is none."""
    try:
        found: dict[str, Any] = _json(conn, "GET", kind.path(namespace, name))
    except _Status as status:
        if status.status == 404:
            return None
        raise status.error() from None
    return found


def list_objects(
    conn: Connection,
    kind: Kind,
    namespace: str | None,
    selector: str | None = None,
    *,
    field_selector: str | None = None,
    metadata_only: bool = False,
) -> list[dict[str, Any]]:
    """Every object of `kind` in the namespace matching the selectors: one request (a
    namespace holding thousands would page; plugins' namespaces do not)."""
    query = []
    if selector:
        query.append(("labelSelector", selector))
    if field_selector:
        query.append(("fieldSelector", field_selector))
    accept = METADATA_ONLY if metadata_only else "application/json"
    try:
        answer = _json(conn, "GET", kind.path(namespace), query=query, accept=accept)
    except _Status as status:
        if status.status == 404 and kind.namespaced:
            return []  # the namespace is not there (yet)
        raise status.error() from None
    items: list[dict[str, Any]] = answer.get("items") or []
    for item in items:  # list items carry neither (or PartialObjectMetadata): put them back
        item["kind"] = kind.kind
        item["apiVersion"] = kind.api_version
    return items


def apply(
    conn: Connection,
    obj: Mapping[str, Any],
    manager: str,
    *,
    force: bool = False,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Server-side apply of `obj` as `manager`; the object as stored (or as it would be,
    `dry_run`). Unknown or duplicate fields are errors (fieldValidation Strict). A 409 is
    an ApplyConflict (raised only without `force`)."""
    kind = kind_of(obj)
    metadata = obj["metadata"]
    query = [("fieldManager", manager), ("fieldValidation", "Strict")]
    if force:
        query.append(("force", "true"))
    if dry_run:
        query.append(("dryRun", "All"))
    path = kind.path(metadata.get("namespace"), metadata["name"])
    try:
        answer: dict[str, Any] = _json(
            conn, "PATCH", path, query=query, body=dict(obj), content_type=APPLY
        )
    except _Status as status:
        if status.status == 409:
            raise ApplyConflict(ref(obj), _conflicts(status.body)) from None
        raise status.error() from None
    return answer


def _conflicts(body: Mapping[str, Any]) -> list[Conflict]:
    found = []
    for cause in (body.get("details") or {}).get("causes") or []:
        match = _CONFLICT.search(str(cause.get("message", "")))
        manager, sub = (match["manager"], match["sub"] or "") if match else ("unknown", "")
        found.append(Conflict(str(cause.get("field", "")), manager, sub))
    return found or [Conflict("(unknown field)", "unknown")]


def delete(
    conn: Connection,
    kind: Kind,
    namespace: str,
    name: str,
    uid: str | None,
    *,
    foreground: bool = False,
) -> bool:
    """Delete the object if it is still the one with `uid` (the precondition makes the API
    refuse a same-named object made since). `foreground`: it goes once its dependents
    have (a Deployment: its ReplicaSets and pods); else at once, dependents after. False
    when it was gone already."""
    body: dict[str, Any] = {"propagationPolicy": "Foreground" if foreground else "Background"}
    if uid:
        body["preconditions"] = {"uid": uid}
    try:
        _json(conn, "DELETE", kind.path(namespace, name), body=body)
    except _Status as status:
        if status.status == 404:
            return False
        if status.status == 409 and uid:  # another object of that name now: not ours
            return False
        raise status.error() from None
    return True


def scale(
    conn: Connection, kind: Kind, namespace: str, name: str, replicas: int, manager: str
) -> bool:
    """Set the replica count through the scale subresource (an update, as `kubectl scale`
    does); False when the object is gone."""
    path = kind.path(namespace, name) + "/scale"
    try:
        _json(
            conn,
            "PATCH",
            path,
            query=[("fieldManager", manager)],
            body={"spec": {"replicas": replicas}},
            content_type="application/merge-patch+json",
        )
    except _Status as status:
        if status.status == 404:
            return False
        raise status.error() from None
    return True


class WatchExpired(Exception):
    """The resourceVersion a watch started from is too old: list again."""


def watch(
    conn: Connection,
    kind: Kind,
    namespace: str,
    name: str,
    resource_version: str,
    timeout: float,
) -> Iterator[dict[str, Any]]:
    """The object's changes after `resource_version`, for at most `timeout` seconds (the
    API closes the watch then; the caller decides whether to watch again)."""
    seconds = max(1, int(timeout))
    query = [
        ("watch", "true"),
        ("fieldSelector", f"metadata.name={name}"),
        ("resourceVersion", resource_version),
        ("timeoutSeconds", str(seconds)),
    ]
    response = _send(conn, "GET", kind.path(namespace), query=query, timeout=seconds + 10)
    raw = response.response
    try:
        if not 200 <= response.status <= 299:
            body = json.loads(raw.read() or b"{}")
            raise _Status(response.status, body, f"watching {kind.kind} {name}").error()
        yield from _events(raw, kind, name)
    finally:
        # A watch left early still has a stream coming: close the connection rather than
        # give it back to the pool half read (the next request would read the rest).
        raw.close()
        raw.release_conn()


def _events(raw: Any, kind: Kind, name: str) -> Iterator[dict[str, Any]]:
    pending = b""
    try:
        for chunk in raw.stream(16384, decode_content=True):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if not line.strip():
                    continue
                event = json.loads(line)
                if event.get("type") == "ERROR":
                    status = event.get("object") or {}
                    if status.get("code") == 410:
                        raise WatchExpired(str(status.get("message", "")))
                    message = status.get("message", "")
                    raise ProviderError(f"watching {kind.kind} {name}: {message}", transient=True)
                yield event
    except (urllib3.exceptions.HTTPError, OSError):
        return  # the watch ended (timeout, connection closed): the caller watches again


# --- drift -----------------------------------------------------------------------------

Segment = str | int | tuple[str, Any]  # a key, a position, or (merge key, value)
Path = tuple[Segment, ...]


def format_path(path: Path) -> str:
    text = ""
    for segment in path:
        if isinstance(segment, str):
            text += f".{segment}"
        elif isinstance(segment, int):
            text += f"[{segment}]"
        else:
            text += f"[{segment[0]}={segment[1]}]"
    return text or "."


def _merge_key(items: Sequence[Any]) -> str | None:
    """How a list's items are matched: by `name` (containers, env, volumes, ports) or
    `containerPort` when every item has one; else by position."""
    if not items or not all(isinstance(item, dict) for item in items):
        return None
    for key in ("name", "containerPort"):
        if all(key in item for item in items):
            return key
    return None


def project(value: Any, shape: Any) -> Any:
    """`value` (an API answer) reduced to the fields `shape` (what we applied) has."""
    if isinstance(shape, dict) and isinstance(value, dict):
        return {k: project(value[k], s) for k, s in shape.items() if k in value}
    if isinstance(shape, list) and isinstance(value, list):
        key = _merge_key(shape)
        if key is not None:
            by_key = {item.get(key): item for item in value if isinstance(item, dict)}
            return [project(by_key[s[key]], s) for s in shape if s[key] in by_key]
        if len(shape) == len(value):
            return [project(v, s) for v, s in zip(value, shape, strict=True)]
    return value


def differences(want: Any, have: Any, path: Path = ()) -> list[tuple[Path, Any, Any]]:
    """Where `have` (live) differs from `want` (a projection): (path, wanted, live);
    live None where the field is missing. Fields `want` does not have are not looked at."""
    if isinstance(want, dict):
        if not isinstance(have, dict):
            return [(path, want, have)]
        found: list[tuple[Path, Any, Any]] = []
        for key, wanted in want.items():
            if key not in have:
                found.append(((*path, key), wanted, None))
            else:
                found += differences(wanted, have[key], (*path, key))
        return found
    if isinstance(want, list) and want:
        if not isinstance(have, list):
            return [(path, want, have)]
        key = _merge_key(want)
        if key is None:
            if len(want) != len(have):
                return [(path, want, have)]
            pairs = [((*path, i), w, h) for i, (w, h) in enumerate(zip(want, have, strict=True))]
            return [d for p, w, h in pairs for d in differences(w, h, p)]
        by_key = {item.get(key): item for item in have if isinstance(item, dict)}
        found = []
        for item in want:
            where = (*path, (key, item[key]))
            if item[key] not in by_key:
                found.append((where, item, None))
            else:
                found += differences(item, by_key[item[key]], where)
        return found
    return [] if want == have else [(path, want, have)]


def owners(live: Mapping[str, Any], path: Path) -> list[str]:
    """The field managers owning `path` in `live` (status entries left out), by their
    managedFields: an entry owns a field it lists, or an atomic list holding it."""
    found = []
    for entry in (live.get("metadata") or {}).get("managedFields") or []:
        if entry.get("subresource") == "status":
            continue
        if _owns(entry.get("fieldsV1") or {}, path):
            found.append(str(entry.get("manager", "")))
    return found


def _owns(node: Mapping[str, Any], path: Path) -> bool:
    for segment in path:
        if isinstance(segment, int):
            return True  # an atomic list: whoever owns the list owns its items
        if isinstance(segment, str):
            key: str | None = f"f:{segment}"
        else:
            key = next((k for k in node if _keyed(k, segment)), None)
        if key is None or key not in node:
            return False
        node = node[key]
    return True


def _keyed(key: str, segment: tuple[str, Any]) -> bool:
    if not key.startswith("k:"):
        return False
    try:
        fields = json.loads(key[2:])
    except ValueError:
        return False
    return isinstance(fields, dict) and fields.get(segment[0]) == segment[1]


def managers_of(live: Mapping[str, Any], manager: str) -> list[dict[str, Any]]:
    """The managedFields entries of `manager`."""
    entries = (live.get("metadata") or {}).get("managedFields") or []
    return [e for e in entries if e.get("manager") == manager]
