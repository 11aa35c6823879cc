"""Every finding code that `desired.py` and `validate.py` emit, each triggered by one edit of
the example desired state (which validates clean).

Each test copies `desired-state/` (fixture `desired_state_copy`), edits one file as text and
asserts code, severity, file, line and column. Expected positions are computed from the
edited text (`DesiredStateCopy.replace` / `locate`), never hard-coded.
"""

from __future__ import annotations

import inspect
import itertools
import json
import os
import re
import sys
import textwrap
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml

from plexica_gitops.desired import build as desired
from plexica_gitops.desired import validate
from plexica_gitops.desired.validate import ValidationReport, validate_directory
from plexica_gitops.findings import Finding, Location, Severity

if TYPE_CHECKING:
    from conftest import DesiredStateCopy

needs_symlinks = pytest.mark.skipif(sys.platform == "win32", reason="needs POSIX symlinks")

INVENTORY = "plugins/inventory/plugin.yaml"  # desired `installed`; no tenant or plugin uses it
CRM = "plugins/crm/plugin.yaml"
PLATFORM = "platform.yaml"
HOOLI = "tenants/hooli.yaml"  # no plugin or tenant refers to this tenant
DIGEST = "sha256:" + "0123456789abcdef" * 4


# --------------------------------------------------------------------------- helpers


def codes(report: ValidationReport) -> set[str]:
    return {finding.code for finding in report.findings}


def all_with(report: ValidationReport, code: str) -> list[Finding]:
    return [finding for finding in report.findings if finding.code == code]


def the(report: ValidationReport, code: str) -> Finding:
    """The one finding with `code` (fails, listing all findings, if there is not exactly one)."""
    found = all_with(report, code)
    assert len(found) == 1, [(f.code, str(f.location), f.message) for f in report.findings]
    return found[0]


def assert_finding(
    finding: Finding, code: str, location: Location, severity: Severity = Severity.ERROR
) -> None:
    assert finding.code == code
    assert finding.severity is severity
    assert finding.location == location, (str(finding.location), str(location))
    assert finding.message
    assert finding.hint


def only_codes(report: ValidationReport, *expected: str) -> None:
    assert codes(report) == set(expected), [
        (f.code, str(f.location), f.message) for f in report.findings
    ]


def plugin_document(
    plugin_id: str, *, depends_on: tuple[str, ...] = (), version: str = "1.0.0"
) -> str:
    """A minimal Plugin document that validates clean on its own."""
    dependencies = "".join(f'      - plugin: {dep}\n        version: "*"\n' for dep in depends_on)
    return (
        "apiVersion: plexica.io/v1alpha1\n"
        "kind: Plugin\n"
        "metadata:\n"
        f"  name: {plugin_id}\n"
        "spec:\n"
        "  state: active\n"
        "  manifest:\n"
        f"    id: {plugin_id}\n"
        f"    name: {plugin_id}\n"
        f"    version: {version}\n"
        "    runtime:\n"
        "      type: node\n"
        f"      image: localhost/plexica/{plugin_id}:{version}\n"
        + (f"    dependencies:\n{dependencies}" if dependencies else "    dependencies: []\n")
        + "    api:\n"
        f"      basePath: /api/plugins/{plugin_id}\n"
    )


def move_manifest_to_file(repo: DesiredStateCopy, plugin_id: str, name: str) -> str:
    """Move the inline manifest of a plugin to `name` beside its plugin.yaml (YAML, or JSON
    for a `.json` name); return the manifest file's relative path."""
    rel = f"plugins/{plugin_id}/plugin.yaml"
    envelope, manifest = repo.text(rel).split("  manifest:\n")
    manifest_yaml = textwrap.dedent(manifest)
    if name.endswith(".json"):
        manifest_yaml = json.dumps(yaml.safe_load(manifest_yaml), indent=2) + "\n"
    repo.write(rel, envelope + f"  manifestFile: {name}\n")
    target = f"plugins/{plugin_id}/{name}"
    repo.write(target, manifest_yaml)
    return target


# --------------------------------------------------------------------------- the example


def test_example_desired_state_has_no_findings_at_all(
    desired_state_copy: DesiredStateCopy,
) -> None:
    report = desired_state_copy.validate()
    assert report.findings == []
    assert report.valid
    assert sorted(report.desired.plugins) == [
        "analytics",
        "billing",
        "contacts",
        "crm",
        "inventory",
        "notifications",
    ]
    assert sorted(report.desired.tenants) == ["acme", "globex", "hooli", "initech", "umbrella"]


def test_committed_example_directory_validates_clean() -> None:
    from conftest import EXAMPLE_DESIRED_STATE

    assert validate_directory(EXAMPLE_DESIRED_STATE).findings == []


def test_every_code_desired_and_validate_emit_is_exercised_in_this_file() -> None:
    """A new rule code needs a test here: each code literal in the two modules must be
    mentioned by some test in this file."""
    emitted: set[str] = set()
    for module in (desired, validate):
        emitted |= set(re.findall(r'"(PG[SV]\d{3})"', inspect.getsource(module)))
    assert len(emitted) > 40
    mentioned = set(re.findall(r"PG[SV]\d{3}", Path(__file__).read_text(encoding="utf-8")))
    assert emitted - mentioned == set()


# --------------------------------------------------------------------------- PGS1xx: structure


@pytest.mark.parametrize(
    ("removed", "first_line_after", "missing"),
    [
        ("kind: Tenant\n", "apiVersion: plexica.io/v1alpha1", "kind"),
        ("apiVersion: plexica.io/v1alpha1\n", "kind: Tenant", "apiVersion"),
    ],
)
def test_pgs101_document_without_kind_or_api_version(
    desired_state_copy: DesiredStateCopy, removed: str, first_line_after: str, missing: str
) -> None:
    repo = desired_state_copy
    repo.replace(HOOLI, removed, "")
    report = repo.validate()
    only_codes(report, "PGS101")
    finding = the(report, "PGS101")
    # a document's position is its first content line (comments skipped)
    assert_finding(finding, "PGS101", repo.locate(HOOLI, first_line_after))
    assert f"`{missing}`" in finding.message


def test_pgs102_unknown_kind(desired_state_copy: DesiredStateCopy) -> None:
    repo = desired_state_copy
    where = repo.replace(HOOLI, "kind: Tenant", "kind: Tennant")
    report = repo.validate()
    only_codes(report, "PGS102")
    finding = the(report, "PGS102")
    assert_finding(finding, "PGS102", where)
    assert "'Tennant'" in finding.message
    assert "Platform, Plugin, Tenant" in finding.hint


@pytest.mark.parametrize("kind", ["[Tenant]", "{name: Tenant}"])
def test_pgs102_kind_that_is_not_text(desired_state_copy: DesiredStateCopy, kind: str) -> None:
    repo = desired_state_copy
    where = repo.replace(HOOLI, "kind: Tenant", f"kind: {kind}")
    report = repo.validate()
    assert_finding(the(report, "PGS102"), "PGS102", where)


def test_pgs103_unsupported_api_version(desired_state_copy: DesiredStateCopy) -> None:
    repo = desired_state_copy
    where = repo.replace(HOOLI, "apiVersion: plexica.io/v1alpha1", "apiVersion: plexica.io/v1")
    report = repo.validate()
    only_codes(report, "PGS103")
    finding = the(report, "PGS103")
    assert_finding(finding, "PGS103", where)
    assert "'plexica.io/v1'" in finding.message
    assert "plexica.io/v1alpha1" in finding.hint


def test_pgs110_unknown_field_near_miss_gets_did_you_mean(
    desired_state_copy: DesiredStateCopy,
) -> None:
    repo = desired_state_copy
    repo.replace(INVENTORY, "basePath: /api/plugins/inventory", "basepath: /api/plugins/inventory")
    report = repo.validate()
    only_codes(report, "PGS110", "PGS112")  # the typo is unknown AND basePath is missing
    finding = the(report, "PGS110")
    assert_finding(finding, "PGS110", repo.locate(INVENTORY, "basepath:"))
    assert "`basepath`" in finding.message
    assert "spec.manifest.api" in finding.message
    assert finding.hint == "Did you mean `basePath`?"
    missing = the(report, "PGS112")
    assert_finding(missing, "PGS112", repo.locate(INVENTORY, "api:\n"))
    assert "`basePath`" in missing.message


def test_pgs110_unknown_field_without_near_miss_lists_allowed_fields(
    desired_state_copy: DesiredStateCopy,
) -> None:
    repo = desired_state_copy
    repo.replace(INVENTORY, "  name: inventory\n", "  name: inventory\n  colour: red\n")
    report = repo.validate()
    only_codes(report, "PGS110")
    finding = the(report, "PGS110")
    assert_finding(finding, "PGS110", repo.locate(INVENTORY, "colour: red"))
    assert "`colour`" in finding.message and "metadata" in finding.message
    assert finding.hint == "Allowed here: annotations, labels, name."


def test_pgs111_wrong_type(desired_state_copy: DesiredStateCopy) -> None:
    repo = desired_state_copy
    where = repo.replace(INVENTORY, "replicas: 1", "replicas: one")
    report = repo.validate()
    only_codes(report, "PGS111")
    finding = the(report, "PGS111")
    assert_finding(finding, "PGS111", where)
    assert finding.message == "`spec.replicas` must be of type integer, not string"


def test_pgs111_env_value_that_is_neither_text_nor_reference(
    desired_state_copy: DesiredStateCopy,
) -> None:
    repo = desired_state_copy
    where = repo.replace(INVENTORY, "LOG_LEVEL: debug", "LOG_LEVEL: [debug]")
    report = repo.validate()
    only_codes(report, "PGS111")
    finding = the(report, "PGS111")
    assert_finding(finding, "PGS111", where)
    assert "`spec.env.LOG_LEVEL` must be one of:" in finding.message
    assert "{fromEnv: NAME}" in finding.message and "{secretRef: {name, key}}" in finding.message


def test_pgs112_missing_required_field_points_at_the_parent(
    desired_state_copy: DesiredStateCopy,
) -> None:
    repo = desired_state_copy
    repo.replace(INVENTORY, "    name: Inventory\n", "")
    report = repo.validate()
    only_codes(report, "PGS112")
    finding = the(report, "PGS112")
    assert_finding(finding, "PGS112", repo.locate(INVENTORY, "  manifest:", offset=2))
    assert finding.message == "missing required field `name` in spec.manifest"


def test_pgs113_value_not_in_enum(desired_state_copy: DesiredStateCopy) -> None:
    repo = desired_state_copy
    where = repo.replace(INVENTORY, "state: installed", "state: running")
    report = repo.validate()
    only_codes(report, "PGS113")
    finding = the(report, "PGS113")
    assert_finding(finding, "PGS113", where)
    assert "`spec.state`" in finding.message
    assert "'running' is not allowed" in finding.message
    for state in ("registered", "installed", "active", "disabled", "absent"):
        assert repr(state) in finding.message


def test_pgs120_second_platform_document(desired_state_copy: DesiredStateCopy) -> None:
    repo = desired_state_copy
    first = repo.locate(PLATFORM, "apiVersion:")
    body = repo.text(PLATFORM)[repo.text(PLATFORM).index("apiVersion:") :]
    start = repo.append_document(PLATFORM, body)
    report = repo.validate()
    only_codes(report, "PGS120")
    finding = the(report, "PGS120")
    kind_line = start + body.splitlines().index("kind: Platform")
    assert_finding(finding, "PGS120", Location(PLATFORM, kind_line, 1))
    assert str(first) in finding.message  # names the first Platform


def test_pgs121_no_platform_document(desired_state_copy: DesiredStateCopy) -> None:
    repo = desired_state_copy
    repo.path(PLATFORM).unlink()
    report = repo.validate()
    assert codes(report) == {"PGS121", "PGV507"}  # platform topics went with the platform
    assert_finding(the(report, "PGS121"), "PGS121", Location("."))


def test_pgs121_is_not_reported_when_the_platform_file_failed_to_load(
    desired_state_copy: DesiredStateCopy,
) -> None:
    repo = desired_state_copy
    where = repo.replace(PLATFORM, "  version: 2.4.0", "  version: [2.4.0")
    report = repo.validate()
    assert "PGS121" not in codes(report)
    # not PGV507 for subscribers of platform topics: the platform declares them, it only
    # failed to load, and that is what to fix
    assert codes(report) == {"PGL001"}
    assert the(report, "PGL001").location.file == PLATFORM
    assert where.line <= the(report, "PGL001").location.line


def test_pgs121_is_not_reported_when_the_platform_document_has_a_schema_error(
    desired_state_copy: DesiredStateCopy,
) -> None:
    repo = desired_state_copy
    repo.replace(PLATFORM, "  prune: false", "  prun: false")
    report = repo.validate()
    assert "PGS110" in codes(report)
    assert "PGS121" not in codes(report)


def test_pgs113_value_the_schema_accepts_but_the_model_rejects(
    desired_state_copy: DesiredStateCopy,
) -> None:
    # NaN passes the schema's exclusiveMinimum (NaN <= 0 is false) but not the model's gt=0:
    # the model's objection is reported at the value itself.
    repo = desired_state_copy
    repo.replace(
        INVENTORY, "  replicas: 1\n", "  replicas: 1\n  rollout:\n    timeoutSeconds: .nan\n"
    )
    report = repo.validate()
    only_codes(report, "PGS113")
    finding = the(report, "PGS113")
    assert_finding(finding, "PGS113", repo.locate(INVENTORY, "timeoutSeconds:"))
    assert "spec.rollout.timeoutSeconds" in finding.message


def test_pgs130_both_manifest_and_manifest_file(desired_state_copy: DesiredStateCopy) -> None:
    repo = desired_state_copy
    repo.replace(INVENTORY, "  manifest:\n", "  manifestFile: manifest.yaml\n  manifest:\n")
    report = repo.validate()
    only_codes(report, "PGS130")
    finding = the(report, "PGS130")
    assert_finding(finding, "PGS130", repo.locate(INVENTORY, "\nspec:", offset=1))
    assert finding.subjects == ("inventory",)


def test_pgs130_neither_manifest_nor_manifest_file(desired_state_copy: DesiredStateCopy) -> None:
    repo = desired_state_copy
    repo.write(INVENTORY, repo.text(INVENTORY).split("  manifest:\n")[0])
    report = repo.validate()
    only_codes(report, "PGS130")
    assert_finding(the(report, "PGS130"), "PGS130", repo.locate(INVENTORY, "\nspec:", offset=1))


def test_pgs131_manifest_id_differs_from_metadata_name(
    desired_state_copy: DesiredStateCopy,
) -> None:
    repo = desired_state_copy
    where = repo.replace(INVENTORY, "    id: inventory\n", "    id: stock\n")
    report = repo.validate()
    only_codes(report, "PGS131")
    finding = the(report, "PGS131")
    assert_finding(finding, "PGS131", Location(INVENTORY, where.line, 5))
    assert "'stock'" in finding.message and "'inventory'" in finding.message
    assert finding.subjects == ("inventory", "stock")


def test_pgs132_manifest_file_does_not_exist(desired_state_copy: DesiredStateCopy) -> None:
    repo = desired_state_copy
    repo.write(INVENTORY, repo.text(INVENTORY).split("  manifest:\n")[0])
    where = repo.replace(INVENTORY, "\nspec:\n", "\nspec:\n  manifestFile: missing.yaml\n")
    report = repo.validate()
    only_codes(report, "PGS132")
    finding = the(report, "PGS132")
    assert_finding(finding, "PGS132", Location(INVENTORY, where.line + 2, 3))
    assert "'missing.yaml'" in finding.message
    assert finding.subjects == ("inventory",)


def test_pgs132_manifest_file_with_two_documents(desired_state_copy: DesiredStateCopy) -> None:
    repo = desired_state_copy
    target = move_manifest_to_file(repo, "inventory", "manifest.yaml")
    repo.append_document(target, "id: other\n")
    report = repo.validate()
    only_codes(report, "PGS132")
    finding = the(report, "PGS132")
    assert_finding(finding, "PGS132", repo.locate(INVENTORY, "manifestFile:"))
    assert "2 documents" in finding.message


# --------------------------------------------------------------------------- manifestFile


@pytest.mark.parametrize("name", ["manifest.yaml", "manifest.json"])
def test_manifest_file_beside_plugin_yaml_validates_clean(
    desired_state_copy: DesiredStateCopy, name: str
) -> None:
    repo = desired_state_copy
    target = move_manifest_to_file(repo, "inventory", name)
    report = repo.validate()
    assert report.findings == []
    plugin = report.desired.plugins["inventory"]
    assert plugin.manifest.version == "0.9.0"
    assert plugin.manifest_source.file == target
    assert [m.version for m in plugin.migrations] == ["0001", "0002"]
    assert target in report.desired.files


def test_rule_error_inside_a_manifest_file_points_into_that_file(
    desired_state_copy: DesiredStateCopy,
) -> None:
    repo = desired_state_copy
    target = move_manifest_to_file(repo, "inventory", "manifest.yaml")
    where = repo.replace(target, "image: localhost/plexica/inventory:0.9.0", "image: x/y:0.8.0")
    report = repo.validate()
    only_codes(report, "PGV302")
    assert_finding(the(report, "PGV302"), "PGV302", where)


def test_migrations_path_of_a_manifest_file_is_relative_to_that_file(
    desired_state_copy: DesiredStateCopy,
) -> None:
    repo = desired_state_copy
    target = move_manifest_to_file(repo, "inventory", "manifest.yaml")
    where = repo.replace(target, "path: migrations", "path: sql")
    report = repo.validate()
    only_codes(report, "PGV804")
    assert_finding(the(report, "PGV804"), "PGV804", where)


def test_schema_error_inside_a_manifest_file_points_at_the_node(
    desired_state_copy: DesiredStateCopy,
) -> None:
    repo = desired_state_copy
    target = move_manifest_to_file(repo, "inventory", "manifest.yaml")
    where = repo.replace(target, "basePath:", "basepath:")
    report = repo.validate()
    finding = the(report, "PGS110")
    assert finding.location == where
    assert "spec.manifest.spec.manifest" not in finding.message
    assert finding.hint == "Did you mean `basePath`?"


def test_manifest_file_naming_its_own_plugin_yaml_is_reported(
    desired_state_copy: DesiredStateCopy,
) -> None:
    repo = desired_state_copy
    repo.write(INVENTORY, repo.text(INVENTORY).split("  manifest:\n")[0])
    repo.replace(INVENTORY, "\nspec:\n", "\nspec:\n  manifestFile: plugin.yaml\n")
    report = repo.validate()
    assert not report.valid


# --------------------------------------------------------------------------- PGV2xx: identities


def rename_inventory(repo: DesiredStateCopy, new_id: str) -> Location:
    where = repo.replace(INVENTORY, "  name: inventory\n", f"  name: {new_id}\n")
    repo.replace(INVENTORY, "    id: inventory\n", f"    id: {new_id}\n")
    return Location(INVENTORY, where.line, 3)


@pytest.mark.parametrize("plugin_id", ["Stock_Items", "stock--items", "a" * 64])
def test_pgv201_plugin_id_not_kebab_case(
    desired_state_copy: DesiredStateCopy, plugin_id: str
) -> None:
    where = rename_inventory(desired_state_copy, plugin_id)
    report = desired_state_copy.validate()
    finding = the(report, "PGV201")
    assert_finding(finding, "PGV201", where)
    assert repr(plugin_id) in finding.message
    assert finding.subjects == (plugin_id,)


def test_pgv201_longest_allowed_plugin_id_is_fine(desired_state_copy: DesiredStateCopy) -> None:
    rename_inventory(desired_state_copy, "a" * 63)
    assert "PGV201" not in codes(desired_state_copy.validate())


def test_pgv202_plugin_declared_in_two_files(desired_state_copy: DesiredStateCopy) -> None:
    repo = desired_state_copy
    first = repo.locate(INVENTORY, "  name: inventory", offset=2)
    second_file = "plugins/zz-inventory/plugin.yaml"  # sorts after plugins/inventory/
    repo.write(second_file, repo.text(INVENTORY))
    report = repo.validate()
    only_codes(report, "PGV202")
    finding = the(report, "PGV202")
    assert_finding(finding, "PGV202", repo.locate(second_file, "  name: inventory", offset=2))
    assert str(first) in finding.message
    assert finding.subjects == ("inventory",)


def test_pgv203_tenant_slug_declared_twice(desired_state_copy: DesiredStateCopy) -> None:
    repo = desired_state_copy
    first = repo.locate(HOOLI, "  name: hooli", offset=2)
    second_file = "tenants/zz-hooli.yaml"
    repo.write(second_file, repo.text(HOOLI))
    repo.replace(
        second_file, "deb11b4d-6355-4379-b0a2-d69759655852", "1d7e0a1e-0000-4000-8000-0000000000aa"
    )
    repo.replace(second_file, "schema: tenant_hooli", "schema: tenant_hooli_two")
    report = repo.validate()
    only_codes(report, "PGV203")
    finding = the(report, "PGV203")
    assert_finding(finding, "PGV203", repo.locate(second_file, "  name: hooli", offset=2))
    assert str(first) in finding.message
    assert finding.subjects == ("hooli",)


def test_pgv204_two_tenants_with_the_same_id(desired_state_copy: DesiredStateCopy) -> None:
    repo = desired_state_copy
    acme_id = "7be72c81-2e45-42c0-b2f0-8962a8006663"
    # the same UUID written in upper case is still the same id
    where = repo.replace(
        "tenants/globex.yaml", "id: a28eb35d-09b1-40e0-adf0-7561994fe505", f"id: {acme_id.upper()}"
    )
    report = repo.validate()
    only_codes(report, "PGV204")
    finding = the(report, "PGV204")
    assert_finding(finding, "PGV204", where)
    assert acme_id in finding.message
    assert finding.subjects == ("acme", "globex")


def test_pgv205_two_tenants_with_the_same_schema(desired_state_copy: DesiredStateCopy) -> None:
    repo = desired_state_copy
    where = repo.replace(HOOLI, "schema: tenant_hooli", "schema: tenant_acme")
    report = repo.validate()
    only_codes(report, "PGV205")
    finding = the(report, "PGV205")
    assert_finding(finding, "PGV205", where)
    assert "'tenant_acme'" in finding.message
    assert finding.subjects == ("acme", "hooli")


@pytest.mark.parametrize("schema", ["Tenant-Acme", "pg_x", "public", "user", "a" * 64])
def test_pgv206_unsafe_schema_name(desired_state_copy: DesiredStateCopy, schema: str) -> None:
    repo = desired_state_copy
    where = repo.replace(HOOLI, "schema: tenant_hooli", f"schema: {schema}")
    report = repo.validate()
    only_codes(report, "PGV206")
    finding = the(report, "PGV206")
    assert_finding(finding, "PGV206", where)
    assert repr(schema) in finding.message
    assert finding.subjects == ("hooli",)


def test_pgv206_longest_allowed_schema_name_is_fine(desired_state_copy: DesiredStateCopy) -> None:
    repo = desired_state_copy
    repo.replace(HOOLI, "schema: tenant_hooli", "schema: " + "a" * 63)
    assert repo.validate().findings == []


def test_pgv207_tenant_id_not_a_uuid(desired_state_copy: DesiredStateCopy) -> None:
    repo = desired_state_copy
    where = repo.replace(HOOLI, "id: deb11b4d-6355-4379-b0a2-d69759655852", "id: hooli-1")
    report = repo.validate()
    only_codes(report, "PGV207")
    finding = the(report, "PGV207")
    assert_finding(finding, "PGV207", where)
    assert "'hooli-1'" in finding.message
    assert finding.subjects == ("hooli",)


@pytest.mark.parametrize("slug", ["Hooli_Inc", "hooli--inc", "9hooli", "h" * 64])
def test_pgv208_tenant_slug_not_kebab_case(desired_state_copy: DesiredStateCopy, slug: str) -> None:
    repo = desired_state_copy
    where = repo.replace(HOOLI, "  name: hooli", f"  name: {slug}")
    report = repo.validate()
    only_codes(report, "PGV208")
    finding = the(report, "PGV208")
    assert_finding(finding, "PGV208", Location(HOOLI, where.line, 3))
    assert finding.subjects == (slug,)


# --------------------------------------------------------------------------- PGV3xx: versions


def test_pgv301_plugin_version_not_semver(desired_state_copy: DesiredStateCopy) -> None:
    repo = desired_state_copy
    where = repo.replace(INVENTORY, "    version: 0.9.0", "    version: v0.9.0")
    repo.replace(INVENTORY, "inventory:0.9.0", "inventory:v0.9.0")  # keep PGV302 quiet
    report = repo.validate()
    only_codes(report, "PGV301")
    finding = the(report, "PGV301")
    assert_finding(finding, "PGV301", Location(INVENTORY, where.line, 5))
    assert "'v0.9.0'" in finding.message
    assert finding.subjects == ("inventory",)


def test_pgv301_platform_version_not_semver(desired_state_copy: DesiredStateCopy) -> None:
    repo = desired_state_copy
    where = repo.replace(PLATFORM, "  version: 2.4.0", '  version: "2.4"')
    report = repo.validate()
    only_codes(report, "PGV301")  # compat.core is not checked against an invalid version
    finding = the(report, "PGV301")
    assert_finding(finding, "PGV301", Location(PLATFORM, where.line, 3))
    assert "platform version '2.4'" in finding.message
    assert finding.subjects == ()


def test_pgv302_image_tag_differs_from_version(desired_state_copy: DesiredStateCopy) -> None:
    repo = desired_state_copy
    where = repo.replace(
        INVENTORY,
        "image: localhost/plexica/inventory:0.9.0",
        "image: localhost/plexica/inventory:0.9.1",
    )
    report = repo.validate()
    only_codes(report, "PGV302")
    finding = the(report, "PGV302")
    assert_finding(finding, "PGV302", where)
    assert "'0.9.1'" in finding.message and "'0.9.0'" in finding.message
    assert finding.subjects == ("inventory",)


@pytest.mark.parametrize(
    ("image", "floats"),
    [
        ("localhost/plexica/inventory:latest", True),
        ("localhost/plexica/inventory", True),
        ("localhost:5000/plexica/inventory", True),  # a registry port is not a tag
        ("localhost:5000/plexica/inventory:0.9.0", False),
        ("localhost/plexica/inventory:v0.9.0", False),
        (f"localhost/plexica/inventory@{DIGEST}", False),
        (f"localhost/plexica/inventory:latest@{DIGEST}", False),
    ],
)
def test_pgv303_floating_image_is_a_warning_and_digests_are_quiet(
    desired_state_copy: DesiredStateCopy, image: str, floats: bool
) -> None:
    repo = desired_state_copy
    where = repo.replace(INVENTORY, "image: localhost/plexica/inventory:0.9.0", f"image: {image}")
    report = repo.validate()
    assert report.valid
    if not floats:
        assert report.findings == []
        return
    only_codes(report, "PGV303")
    finding = the(report, "PGV303")
    assert_finding(finding, "PGV303", where, Severity.WARNING)
    assert repr(image) in finding.message
    assert ":0.9.0" in finding.hint


def test_pgv304_bad_dependency_range(desired_state_copy: DesiredStateCopy) -> None:
    repo = desired_state_copy
    where = repo.replace(CRM, 'version: "^1.0.0"', 'version: "~>1.0"')
    report = repo.validate()
    only_codes(report, "PGV304")
    finding = the(report, "PGV304")
    assert_finding(finding, "PGV304", where)
    assert "'~>1.0'" in finding.message
    assert finding.subjects == ("crm", "contacts")


def test_pgv304_bad_compat_core_range(desired_state_copy: DesiredStateCopy) -> None:
    repo = desired_state_copy
    where = repo.replace(INVENTORY, 'core: ">=2.4.0"', 'core: ">=two"')
    report = repo.validate()
    only_codes(report, "PGV304")
    finding = the(report, "PGV304")
    assert_finding(finding, "PGV304", where)
    assert "compat.core" in finding.message
    assert finding.subjects == ("inventory",)


def test_pgv305_dependency_version_outside_the_range(
    desired_state_copy: DesiredStateCopy,
) -> None:
    repo = desired_state_copy
    where = repo.replace(CRM, 'version: "^1.0.0"', 'version: "^2.0.0"')
    report = repo.validate()
    only_codes(report, "PGV305")
    finding = the(report, "PGV305")
    assert_finding(finding, "PGV305", where)
    for part in ("'crm'", "contacts", "^2.0.0", "1.3.0"):
        assert part in finding.message
    assert finding.subjects == ("crm", "contacts")


def test_pgv306_dependency_not_declared(desired_state_copy: DesiredStateCopy) -> None:
    repo = desired_state_copy
    where = repo.replace(INVENTORY, "- plugin: contacts", "- plugin: suppliers")
    report = repo.validate()
    only_codes(report, "PGV306")
    finding = the(report, "PGV306")
    # the dependency item starts at its first key, after "- "
    assert_finding(finding, "PGV306", Location(INVENTORY, where.line, where.column + 2))
    assert "'suppliers'" in finding.message
    assert finding.subjects == ("inventory", "suppliers")


def test_pgv307_compat_core_does_not_accept_the_platform(
    desired_state_copy: DesiredStateCopy,
) -> None:
    repo = desired_state_copy
    where = repo.replace(INVENTORY, 'core: ">=2.4.0"', 'core: ">=3.0.0"')
    report = repo.validate()
    only_codes(report, "PGV307")
    finding = the(report, "PGV307")
    assert_finding(finding, "PGV307", where)
    assert ">=3.0.0" in finding.message and "2.4.0" in finding.message
    assert finding.subjects == ("inventory",)


def test_pgv308_dependency_cycle_of_three_plugins(desired_state_copy: DesiredStateCopy) -> None:
    repo = desired_state_copy
    ring = "plugins/ring.yaml"
    repo.write(
        ring,
        "---\n".join(
            [
                plugin_document("ring-a", depends_on=("ring-b",)),
                plugin_document("ring-b", depends_on=("ring-c",)),
                plugin_document("ring-c", depends_on=("ring-a",)),
            ]
        ),
    )
    report = repo.validate()
    only_codes(report, "PGV308")
    finding = the(report, "PGV308")
    # reported once, at the dependency of the first plugin (by name) that starts the cycle
    assert_finding(finding, "PGV308", repo.locate(ring, "- plugin: ring-b", offset=2))
    assert finding.message == "dependency cycle: ring-a → ring-b → ring-c → ring-a"
    assert finding.subjects == ("ring-a", "ring-b", "ring-c")


def test_pgv308_plugin_depending_on_itself(desired_state_copy: DesiredStateCopy) -> None:
    repo = desired_state_copy
    repo.write("plugins/loop.yaml", plugin_document("loop", depends_on=("loop",)))
    report = repo.validate()
    only_codes(report, "PGV308")
    finding = the(report, "PGV308")
    assert_finding(finding, "PGV308", repo.locate("plugins/loop.yaml", "plugin: loop"))
    assert finding.subjects == ("loop",)


def test_pgv308_message_names_a_real_cycle(desired_state_copy: DesiredStateCopy) -> None:
    repo = desired_state_copy
    repo.write(
        "plugins/chain.yaml",
        "---\n".join(
            [
                plugin_document("chain-a", depends_on=("chain-b",)),
                plugin_document("chain-b", depends_on=("chain-a", "chain-c")),
                plugin_document("chain-c", depends_on=("chain-b",)),
            ]
        ),
    )
    edges = {("chain-a", "chain-b"), ("chain-b", "chain-a"), ("chain-b", "chain-c")}
    edges.add(("chain-c", "chain-b"))
    report = repo.validate()
    finding = the(report, "PGV308")
    assert finding.subjects == ("chain-a", "chain-b", "chain-c")
    steps = finding.message.removeprefix("dependency cycle: ").split(" → ")
    assert set(itertools.pairwise(steps)) <= edges, finding.message


# --------------------------------------------------------------------------- PGV4xx: lifecycle


def test_pgv401_active_plugin_depends_on_a_disabled_one(
    desired_state_copy: DesiredStateCopy,
) -> None:
    repo = desired_state_copy
    repo.replace("plugins/contacts/plugin.yaml", "  state: active", "  state: disabled")
    dependency = repo.locate(CRM, "- plugin: contacts", offset=2)
    report = repo.validate()
    lifecycle = {f.subjects: f for f in all_with(report, "PGV401")}
    # installed inventory may depend on a disabled plugin; active ones may not
    assert set(lifecycle) == {
        ("billing", "contacts"),
        ("crm", "contacts"),
        ("notifications", "contacts"),
    }
    finding = lifecycle[("crm", "contacts")]
    assert_finding(finding, "PGV401", dependency)
    assert "'crm' is desired active" in finding.message
    assert "'contacts' is desired disabled" in finding.message


# --------------------------------------------------------------------------- PGV5xx: manifest rules


def test_pgv501_api_base_path_not_the_plugin_prefix(desired_state_copy: DesiredStateCopy) -> None:
    repo = desired_state_copy
    where = repo.replace(INVENTORY, "basePath: /api/plugins/inventory", "basePath: /api/inventory")
    report = repo.validate()
    only_codes(report, "PGV501")
    finding = the(report, "PGV501")
    assert_finding(finding, "PGV501", where)
    assert "/api/plugins/inventory" in finding.hint


def test_pgv502_frontend_route_prefix_not_the_plugin_id(
    desired_state_copy: DesiredStateCopy,
) -> None:
    repo = desired_state_copy
    where = repo.replace(INVENTORY, "routePrefix: /inventory", "routePrefix: /stock")
    report = repo.validate()
    only_codes(report, "PGV502")
    finding = the(report, "PGV502")
    assert_finding(finding, "PGV502", where)
    assert "'/stock'" in finding.message


@pytest.mark.parametrize("cpu", ["500x", '"0"', '"0.0"', "0m", '"-1"'])
def test_pgv503_cpu_not_a_quantity(desired_state_copy: DesiredStateCopy, cpu: str) -> None:
    repo = desired_state_copy
    where = repo.replace(INVENTORY, "cpu: 250m", f"cpu: {cpu}")
    report = repo.validate()
    only_codes(report, "PGV503")
    assert_finding(the(report, "PGV503"), "PGV503", where)


def test_pgv504_memory_not_a_quantity(desired_state_copy: DesiredStateCopy) -> None:
    repo = desired_state_copy
    where = repo.replace(INVENTORY, "memory: 384Mi", "memory: 512MB")
    report = repo.validate()
    only_codes(report, "PGV504")
    finding = the(report, "PGV504")
    assert_finding(finding, "PGV504", where)
    assert "'512MB'" in finding.message


def test_pgv505_permission_declared_by_two_plugins(desired_state_copy: DesiredStateCopy) -> None:
    repo = desired_state_copy
    where = repo.replace(INVENTORY, "key: inventory:stock:adjust", "key: contacts:contacts:read")
    report = repo.validate()
    only_codes(report, "PGV505", "PGV506")  # PGV506: not namespaced by inventory
    finding = the(report, "PGV505")
    assert_finding(finding, "PGV505", where)
    assert "'contacts' and 'inventory'" in finding.message
    assert finding.subjects == ("contacts", "inventory")
    assert the(report, "PGV506").severity is Severity.WARNING


def test_pgv505_identical_permission_declared_twice_by_one_plugin(
    desired_state_copy: DesiredStateCopy,
) -> None:
    repo = desired_state_copy
    first = "      - key: inventory:items:read\n        name: Read items\n"
    where = repo.replace(
        INVENTORY, "      - key: inventory:stock:adjust\n        name: Adjust stock\n", first
    )
    repo.replace(
        INVENTORY, "Record receipts, shipments and corrections.", "View items and stock levels."
    )
    report = repo.validate()
    only_codes(report, "PGV505")
    finding = the(report, "PGV505")
    assert_finding(finding, "PGV505", Location(INVENTORY, where.line, where.column + 8))
    assert "declared twice by 'inventory'" in finding.message


def test_pgv505_key_declared_twice_by_one_plugin_with_different_names(
    desired_state_copy: DesiredStateCopy,
) -> None:
    repo = desired_state_copy
    where = repo.replace(INVENTORY, "key: inventory:stock:adjust", "key: inventory:items:read")
    report = repo.validate()
    finding = the(report, "PGV505")
    assert finding.location == where


def test_pgv506_malformed_permission_key_is_an_error(desired_state_copy: DesiredStateCopy) -> None:
    repo = desired_state_copy
    where = repo.replace(INVENTORY, "key: inventory:stock:adjust", "key: Inventory Stock")
    report = repo.validate()
    only_codes(report, "PGV506")
    finding = the(report, "PGV506")
    assert_finding(finding, "PGV506", where)
    assert "malformed" in finding.message


def test_pgv506_key_not_namespaced_by_the_plugin_is_a_warning(
    desired_state_copy: DesiredStateCopy,
) -> None:
    repo = desired_state_copy
    where = repo.replace(INVENTORY, "key: inventory:stock:adjust", "key: stock:adjust")
    report = repo.validate()
    assert report.valid
    only_codes(report, "PGV506")
    finding = the(report, "PGV506")
    assert_finding(finding, "PGV506", where, Severity.WARNING)
    assert "inventory:" in finding.hint


def test_pgv507_subscription_nobody_publishes(desired_state_copy: DesiredStateCopy) -> None:
    repo = desired_state_copy
    repo.replace(INVENTORY, "subscribes: []", "subscribes: [payroll.run.finished]")
    report = repo.validate()
    only_codes(report, "PGV507")
    finding = the(report, "PGV507")
    assert_finding(finding, "PGV507", repo.locate(INVENTORY, "payroll.run.finished"))
    assert "'payroll.run.finished'" in finding.message


@pytest.mark.parametrize(
    ("event", "other", "subjects"),
    [
        ("crm.deal.won", "'crm'", ("crm", "inventory")),
        ("core.tenant.created", "the platform", ("inventory",)),
    ],
)
def test_pgv508_event_published_twice(
    desired_state_copy: DesiredStateCopy, event: str, other: str, subjects: tuple[str, ...]
) -> None:
    repo = desired_state_copy
    where = repo.replace(INVENTORY, "- inventory.stock.low", f"- {event}")
    report = repo.validate()
    only_codes(report, "PGV508")
    finding = the(report, "PGV508")
    assert_finding(finding, "PGV508", Location(INVENTORY, where.line, where.column + 2))
    assert f"published by {other} and by 'inventory'" in finding.message
    assert finding.subjects == subjects


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("healthCheck: /health", "healthCheck: health"),
        ("readiness: /health/ready", "readiness: health/ready"),
        ("liveness: /health/live", "liveness: health/live"),
        ("openapi: /openapi.json", "openapi: openapi.json"),
    ],
)
def test_pgv509_api_path_not_absolute(
    desired_state_copy: DesiredStateCopy, old: str, new: str
) -> None:
    repo = desired_state_copy
    where = repo.replace(INVENTORY, old, new)
    report = repo.validate()
    only_codes(report, "PGV509")
    finding = the(report, "PGV509")
    assert_finding(finding, "PGV509", where)
    assert "not an absolute path" in finding.message


def test_pgv511_published_event_name_not_a_topic_name(
    desired_state_copy: DesiredStateCopy,
) -> None:
    repo = desired_state_copy
    where = repo.replace(INVENTORY, "- inventory.stock.low", "- inventory stock low")
    report = repo.validate()
    (finding,) = report.findings
    assert_finding(finding, "PGV511", Location(INVENTORY, where.line, where.column + 2))
    assert "'inventory stock low'" in finding.message and "topic name" in finding.message


def test_pgv512_topic_settings_for_an_event_the_plugin_does_not_publish(
    desired_state_copy: DesiredStateCopy,
) -> None:
    repo = desired_state_copy
    repo.replace(
        INVENTORY,
        "  state: installed\n",
        "  state: installed\n  topics:\n    inventory.stock.low: {partitions: 6}\n"
        "    inventory.stock.hihg: {partitions: 6}\n",
    )
    where = repo.locate(INVENTORY, "inventory.stock.hihg:")
    report = repo.validate()
    (finding,) = report.findings
    assert_finding(finding, "PGV512", where)
    assert "'inventory.stock.hihg'" in finding.message and "does not publish" in finding.message


@pytest.mark.parametrize("entry", ["remoteEntry.js", "ftp://cdn.example.com/remoteEntry.js"])
def test_pgv510_remote_entry_not_an_http_url(
    desired_state_copy: DesiredStateCopy, entry: str
) -> None:
    repo = desired_state_copy
    where = repo.replace(
        INVENTORY,
        "remoteEntry: http://localhost:3000/plugins/inventory/remoteEntry.js",
        f"remoteEntry: {entry}",
    )
    report = repo.validate()
    only_codes(report, "PGV510")
    finding = the(report, "PGV510")
    assert_finding(finding, "PGV510", where)
    assert repr(entry) in finding.message


# --------------------------------------------------------------------------- PGV6xx: tenants


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("        type: object\n", "        type: 12\n"),  # the top of the schema
        ("enum: [metric, imperial]", "enum: 5"),  # a nested keyword
    ],
)
def test_pgv601_configuration_schema_is_not_a_json_schema(
    desired_state_copy: DesiredStateCopy, old: str, new: str
) -> None:
    repo = desired_state_copy
    repo.replace(INVENTORY, old, new)
    report = repo.validate()
    only_codes(report, "PGV601")
    finding = the(report, "PGV601")
    assert_finding(finding, "PGV601", repo.locate(INVENTORY, new.strip()))
    assert finding.subjects == ("inventory",)


def test_pgv601_invalid_schema_of_a_plugin_tenants_configure(
    desired_state_copy: DesiredStateCopy,
) -> None:
    repo = desired_state_copy
    where = repo.replace(
        CRM,
        "type: array\n            description: Ordered",
        "type: arrayy\n            description: Ordered",
    )
    report = repo.validate()
    only_codes(report, "PGV601")
    assert_finding(the(report, "PGV601"), "PGV601", where)


@pytest.mark.parametrize(
    ("ref", "reason"),
    [('"#"', "refers back to itself"), ('"#/$defs/nowhere"', "nowhere")],
)
def test_pgv601_a_schema_that_cannot_be_evaluated_is_reported_once(
    desired_state_copy: DesiredStateCopy, ref: str, reason: str
) -> None:
    """`$ref: "#"` passes the meta-schema but recurses forever on any value: one PGV601,
    not a RecursionError (nor one per tenant)."""
    repo = desired_state_copy
    repo.replace(
        CRM,
        "        type: object\n        additionalProperties: false",
        f"        $ref: {ref}\n        type: object\n        additionalProperties: false",
    )
    report = repo.validate()
    only_codes(report, "PGV601")
    finding = the(report, "PGV601")
    assert reason in finding.message
    assert finding.subjects == ("crm",)


def test_pgv602_tenant_configuration_violates_the_schema(
    desired_state_copy: DesiredStateCopy,
) -> None:
    repo = desired_state_copy
    where = repo.replace("tenants/acme.yaml", "staleDealDays: 21", "staleDealDays: 0")
    report = repo.validate()
    only_codes(report, "PGV602")
    finding = the(report, "PGV602")
    assert_finding(finding, "PGV602", where)
    assert "`staleDealDays`" in finding.message
    assert "'acme'" in finding.message and "'crm'" in finding.message
    assert str(repo.locate(CRM, "      schema:", offset=6)) in finding.hint
    assert finding.subjects == ("acme", "crm")


def test_pgv602_a_number_too_large_to_check_is_a_finding_not_a_traceback(
    desired_state_copy: DesiredStateCopy,
) -> None:
    repo = desired_state_copy
    billing = "plugins/billing/plugin.yaml"
    repo.replace(billing, "maximum: 100\n", "maximum: 100\n            multipleOf: 0.25\n")
    repo.replace("tenants/acme.yaml", "taxRatePercent: 8.25", "taxRatePercent: 1" + "0" * 400)
    report = repo.validate()
    only_codes(report, "PGV602")
    finding = the(report, "PGV602")
    assert "'acme'" in finding.message and "'billing'" in finding.message
    assert "too large" in finding.message
    assert finding.location is not None and finding.location.file.endswith("acme.yaml")
    assert finding.subjects == ("acme", "billing")


def test_pgv602_points_inside_a_flow_mapping_of_the_tenant_file(
    desired_state_copy: DesiredStateCopy,
) -> None:
    repo = desired_state_copy
    acme = "tenants/acme.yaml"
    repo.replace(acme, "{key: accountTier, type: text}", "{key: accountTier, type: colour}")
    report = repo.validate()
    only_codes(report, "PGV602")
    finding = the(report, "PGV602")
    assert_finding(finding, "PGV602", repo.locate(acme, "type: colour"))
    assert "`customFields.0.type`" in finding.message


def test_pgv602_missing_required_configuration_points_at_the_configuration(
    desired_state_copy: DesiredStateCopy,
) -> None:
    repo = desired_state_copy
    acme = "tenants/acme.yaml"
    repo.replace(
        acme, "        currency: USD\n        paymentTermsDays", "        paymentTermsDays"
    )
    report = repo.validate()
    only_codes(report, "PGV602")
    finding = the(report, "PGV602")
    billing = repo.locate(acme, "    billing:\n", offset=4)
    assert_finding(finding, "PGV602", Location(acme, billing.line + 2, 7))
    assert "'currency' is a required property" in finding.message


def test_reference_where_the_configuration_schema_takes_a_string_is_accepted(
    desired_state_copy: DesiredStateCopy,
) -> None:
    repo = desired_state_copy
    repo.replace(
        "tenants/globex.yaml",
        "senderAddress: crm@globex.example.co.uk",
        "senderAddress: {fromEnv: GLOBEX_SENDER_ADDRESS}",
    )
    assert repo.validate().findings == []


def add_hooli_plugin(repo: DesiredStateCopy, text: str) -> Location:
    """Append a plugin binding to hooli's spec.plugins (the last mapping of the file)."""
    current = repo.text(HOOLI)
    repo.write(HOOLI, current + text)
    return Location(HOOLI, current.count("\n") + 1, 5)


def test_pgv603_tenant_configures_an_undeclared_plugin(
    desired_state_copy: DesiredStateCopy,
) -> None:
    repo = desired_state_copy
    where = add_hooli_plugin(repo, "    payroll:\n      enabled: true\n")
    report = repo.validate()
    only_codes(report, "PGV603")
    finding = the(report, "PGV603")
    assert_finding(finding, "PGV603", where)
    assert finding.subjects == ("hooli", "payroll")


def test_pgv604_tenant_enables_a_plugin_not_desired_active(
    desired_state_copy: DesiredStateCopy,
) -> None:
    repo = desired_state_copy
    where = add_hooli_plugin(repo, "    inventory:\n      enabled: true\n")
    report = repo.validate()
    only_codes(report, "PGV604")
    finding = the(report, "PGV604")
    assert_finding(finding, "PGV604", where)
    assert "desired installed" in finding.message
    assert finding.subjects == ("hooli", "inventory")


def test_pgv604_a_disabled_binding_of_such_a_plugin_is_fine(
    desired_state_copy: DesiredStateCopy,
) -> None:
    repo = desired_state_copy
    add_hooli_plugin(repo, "    inventory:\n      enabled: false\n")
    assert repo.validate().findings == []


def test_a_plugin_desired_disabled_may_stay_enabled_in_its_tenants(
    desired_state_copy: DesiredStateCopy,
) -> None:
    """Disabling a plugin is one edit: the tenants that enable it keep their intent (the
    plan holds their bindings off until it is active again), no PGV604 in each."""
    repo = desired_state_copy
    repo.replace("plugins/analytics/plugin.yaml", "  state: active", "  state: disabled")
    report = repo.validate()
    assert report.findings == []
    enabling = [
        s for s, t in report.desired.tenants.items() if "analytics" in t.document.spec.plugins
    ]
    assert len(enabling) >= 2


@pytest.mark.parametrize("state", ["registered", "absent"])
def test_pgv604_plugins_that_never_served_or_are_going_away_cannot_be_enabled(
    desired_state_copy: DesiredStateCopy, state: str
) -> None:
    repo = desired_state_copy
    repo.replace(INVENTORY, "  state: installed", f"  state: {state}")
    where = add_hooli_plugin(repo, "    inventory:\n      enabled: true\n")
    report = repo.validate()
    only_codes(report, "PGV604")
    assert_finding(the(report, "PGV604"), "PGV604", where)
    assert f"desired {state}" in the(report, "PGV604").message


def test_pgv605_tenant_enables_a_plugin_without_its_dependency(
    desired_state_copy: DesiredStateCopy,
) -> None:
    repo = desired_state_copy
    where = add_hooli_plugin(
        repo, "    billing:\n      enabled: true\n      configuration: {currency: USD}\n"
    )
    report = repo.validate()
    only_codes(report, "PGV605")  # contacts is enabled for hooli, crm is not
    finding = the(report, "PGV605")
    assert_finding(finding, "PGV605", where)
    assert "'billing'" in finding.message and "'crm'" in finding.message
    assert finding.subjects == ("hooli", "billing", "crm")


def test_pgv605_dependency_present_but_disabled(desired_state_copy: DesiredStateCopy) -> None:
    repo = desired_state_copy
    globex = "tenants/globex.yaml"
    repo.replace(
        globex, "    contacts:\n      enabled: true", "    contacts:\n      enabled: false"
    )
    report = repo.validate()
    only_codes(report, "PGV605")
    assert {f.subjects for f in report.findings} == {
        ("globex", "crm", "contacts"),
        ("globex", "notifications", "contacts"),
    }
    crm = {f.subjects: f for f in report.findings}[("globex", "crm", "contacts")]
    assert crm.location == repo.locate(globex, "    crm:", offset=4)


# --------------------------------------------------------------------------- PGV7xx: secrets


def assert_secret_not_shown(report: ValidationReport, secret: str) -> None:
    for finding in report.findings:
        assert secret not in finding.message
        assert secret not in finding.hint
        assert secret not in json.dumps(finding.to_json())


SECRET_CASES = {
    "tenant configuration": (
        "tenants/globex.yaml",
        "password: {fromEnv: GLOBEX_SMTP_PASSWORD}",
        "password: hunter2-TENANT-SECRET",
        ("globex", "notifications"),
        "spec.plugins.notifications.configuration.smtp.password",
    ),
    "plugin env": (
        "plugins/billing/plugin.yaml",
        "STRIPE_API_KEY:\n      fromEnv: BILLING_STRIPE_API_KEY",
        "STRIPE_API_KEY: sk_live_PLUGIN-SECRET",
        ("billing",),
        "spec.env.STRIPE_API_KEY",
    ),
    "platform env": (
        PLATFORM,
        "  env:\n",
        "  env:\n    DATABASE_PASSWORD: hunter2-PLATFORM-SECRET\n",
        (),
        "spec.env.DATABASE_PASSWORD",
    ),
}


@pytest.mark.parametrize("case", sorted(SECRET_CASES))
def test_pgv701_literal_secret_is_reported_without_its_value(
    desired_state_copy: DesiredStateCopy, case: str
) -> None:
    repo = desired_state_copy
    rel, old, new, subjects, dotted = SECRET_CASES[case]
    repo.replace(rel, old, new)
    key, secret = new.strip().splitlines()[-1].strip().split(": ")
    report = repo.validate()
    finding = the(report, "PGV701")
    assert_finding(finding, "PGV701", repo.locate(rel, f"{key}: {secret}"))
    assert f"`{dotted}`" in finding.message
    assert "value not shown" in finding.message
    assert finding.subjects == subjects
    # the tenant case also breaks the schema (a reference is required there): PGV602
    assert codes(report) <= {"PGV701", "PGV602"}
    assert_secret_not_shown(report, secret)


def test_references_to_secrets_are_quiet(desired_state_copy: DesiredStateCopy) -> None:
    repo = desired_state_copy
    repo.replace(
        PLATFORM,
        "  env:\n",
        "  env:\n    API_TOKEN: {secretRef: {name: platform, key: api-token}}\n"
        "    DATABASE_PASSWORD: {fromEnv: PLEXICA_DATABASE_PASSWORD}\n",
    )
    repo.replace(INVENTORY, "LOG_LEVEL: debug", "LOG_LEVEL: debug\n    SIGNING_KEY: {fromEnv: KEY}")
    assert repo.validate().findings == []


def test_secret_inside_a_mapping_is_not_shown_by_pgv602(
    desired_state_copy: DesiredStateCopy,
) -> None:
    repo = desired_state_copy
    acme = "tenants/acme.yaml"
    secret = "xoxb-MAPPING-SECRET"
    repo.replace(acme, "secretRef: {name: acme-slack, key: bot-token}", f"token: {secret}")
    report = repo.validate()
    assert "PGV701" in codes(report)
    assert_secret_not_shown(report, secret)


@pytest.mark.parametrize(
    ("rel", "old", "new", "dotted"),
    [
        (
            PLATFORM,
            "DATABASE_URL:\n      fromEnv: PLEXICA_PLUGIN_DATABASE_URL",
            "DATABASE_URL: postgres://plexica:pw-URL-SECRET@db:5432/plexica",
            "spec.env.DATABASE_URL",
        ),
        (
            INVENTORY,
            "LOG_LEVEL: debug",
            "UPSTREAM: https://sync:pw-URL-SECRET@erp.example.com/api",
            "spec.env.UPSTREAM",
        ),
    ],
)
def test_pgv702_url_with_a_password(
    desired_state_copy: DesiredStateCopy, rel: str, old: str, new: str, dotted: str
) -> None:
    repo = desired_state_copy
    where = repo.replace(rel, old, new)
    report = repo.validate()
    only_codes(report, "PGV702")
    finding = the(report, "PGV702")
    assert_finding(finding, "PGV702", where)
    assert f"`{dotted}`" in finding.message
    assert_secret_not_shown(report, "pw-URL-SECRET")


def test_url_without_a_password_is_quiet(desired_state_copy: DesiredStateCopy) -> None:
    repo = desired_state_copy
    repo.replace(INVENTORY, "LOG_LEVEL: debug", "UPSTREAM: https://sync@erp.example.com/api")
    assert repo.validate().findings == []


# --------------------------------------------------------------------------- PGV8xx: migrations

MIGRATIONS = "plugins/inventory/migrations"


@pytest.mark.parametrize("path", ["../crm/migrations", "migrations/../../crm/migrations", "/tmp"])
def test_pgv801_migrations_path_leaves_the_repository(
    desired_state_copy: DesiredStateCopy, path: str
) -> None:
    repo = desired_state_copy
    where = repo.replace(INVENTORY, "path: migrations", f"path: {path}")
    report = repo.validate()
    only_codes(report, "PGV801")
    finding = the(report, "PGV801")
    assert_finding(finding, "PGV801", where)
    assert repr(path) in finding.message
    assert finding.subjects == ("inventory",)


@needs_symlinks
def test_pgv801_migrations_directory_is_a_symlink_to_outside(
    desired_state_copy: DesiredStateCopy,
) -> None:
    repo = desired_state_copy
    outside = repo.root.parent / "outside-migrations"
    outside.mkdir()
    (outside / "0001_create_x.sql").write_text("CREATE TABLE inventory_x (id int);\n")
    for sql in repo.path(MIGRATIONS).iterdir():
        sql.unlink()
    repo.path(MIGRATIONS).rmdir()
    os.symlink(outside, repo.path(MIGRATIONS), target_is_directory=True)
    report = repo.validate()
    finding = the(report, "PGV801")
    assert_finding(finding, "PGV801", repo.locate(INVENTORY, "path: migrations"))
    # the loader refuses to walk into it as well
    assert codes(report) <= {"PGV801", "PGL007"}


@needs_symlinks
def test_pgv801_migration_file_is_a_symlink_to_outside(
    desired_state_copy: DesiredStateCopy,
) -> None:
    repo = desired_state_copy
    outside = repo.root.parent / "outside.sql"
    outside.write_text("DROP SCHEMA public CASCADE;\n")
    link = f"{MIGRATIONS}/0003_outside.sql"
    os.symlink(outside, repo.path(link))
    report = repo.validate()
    only_codes(report, "PGV801")
    assert_finding(the(report, "PGV801"), "PGV801", Location(link))
    assert [m.version for m in report.desired.plugins["inventory"].migrations] == ["0001", "0002"]


@pytest.mark.parametrize(
    "name",
    [
        "3_add_things.sql",
        "0003_Add-Things.sql",
        "0003-add.sql",
        "\u0660\u0660\u0660\u0663_arabic_digits.sql",  # not migration 3
        "\uff10\uff10\uff10\uff13_fullwidth.sql",
    ],
)
def test_pgv802_bad_migration_file_name(desired_state_copy: DesiredStateCopy, name: str) -> None:
    repo = desired_state_copy
    repo.write(f"{MIGRATIONS}/{name}", "SELECT 1;\n")
    report = repo.validate()
    only_codes(report, "PGV802")
    finding = the(report, "PGV802")
    assert_finding(finding, "PGV802", Location(f"{MIGRATIONS}/{name}"))
    assert repr(name) in finding.message
    assert finding.subjects == ("inventory",)


def test_pgv802_migration_that_is_not_utf8(desired_state_copy: DesiredStateCopy) -> None:
    repo = desired_state_copy
    rel = f"{MIGRATIONS}/0003_latin1.sql"
    repo.path(rel).write_bytes(b"-- caf\xe9\nSELECT 1;\n")
    report = repo.validate()
    only_codes(report, "PGV802")
    assert_finding(the(report, "PGV802"), "PGV802", Location(rel))


def test_non_sql_files_in_the_migrations_directory_are_ignored(
    desired_state_copy: DesiredStateCopy,
) -> None:
    repo = desired_state_copy
    repo.write(f"{MIGRATIONS}/README.md", "notes\n")
    assert repo.validate().findings == []


def test_pgv803_two_migrations_with_the_same_number(desired_state_copy: DesiredStateCopy) -> None:
    repo = desired_state_copy
    first = f"{MIGRATIONS}/0002_create_inventory_stock_movements.sql"
    second = f"{MIGRATIONS}/0002_duplicate_number.sql"  # sorts after the first
    repo.write(second, "SELECT 1;\n")
    report = repo.validate()
    only_codes(report, "PGV803")
    finding = the(report, "PGV803")
    assert_finding(finding, "PGV803", Location(second))
    assert first in finding.message and second in finding.message
    assert [m.path for m in report.desired.plugins["inventory"].migrations][-1] == first


def test_pgv804_migrations_directory_missing(desired_state_copy: DesiredStateCopy) -> None:
    repo = desired_state_copy
    where = repo.replace(INVENTORY, "path: migrations", "path: sql")
    report = repo.validate()
    only_codes(report, "PGV804")
    finding = the(report, "PGV804")
    assert_finding(finding, "PGV804", where)
    assert "'sql'" in finding.message
    assert finding.subjects == ("inventory",)


# --------------------------------------------------------------------------- loader, end to end


def test_pgl001_syntax_error_reports_line_and_column(desired_state_copy: DesiredStateCopy) -> None:
    repo = desired_state_copy
    repo.replace(HOOLI, "displayName: Hooli", "displayName: Hooli: Inc")
    report = repo.validate()
    only_codes(report, "PGL001")
    assert_finding(the(report, "PGL001"), "PGL001", repo.locate(HOOLI, "Hooli: Inc", offset=5))


def test_pgl002_duplicate_key(desired_state_copy: DesiredStateCopy) -> None:
    repo = desired_state_copy
    first = repo.locate(HOOLI, "  status: active", offset=2)
    repo.replace(HOOLI, "  status: active\n", "  status: active\n  status: suspended\n")
    report = repo.validate()
    only_codes(report, "PGL002")
    finding = the(report, "PGL002")
    assert_finding(finding, "PGL002", Location(HOOLI, first.line + 1, 3))
    assert f"line {first.line}" in finding.message


def test_pgl004_billion_laughs_is_rejected_quickly(desired_state_copy: DesiredStateCopy) -> None:
    repo = desired_state_copy
    lines = ["apiVersion: plexica.io/v1alpha1", "kind: Tenant", "a0: &a0 [lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 12)]
    repo.write("tenants/bomb.yaml", "\n".join(lines) + "\n")
    started = time.perf_counter()
    report = repo.validate()
    assert time.perf_counter() - started < 2
    only_codes(report, "PGL004")
    finding = the(report, "PGL004")
    assert finding.severity is Severity.ERROR
    assert finding.location is not None and finding.location.file == "tenants/bomb.yaml"
    assert finding.location.line is not None


@pytest.mark.parametrize(
    ("line", "flagged"),
    [
        ("apiToken: 12345678", True),
        ("clientSecret: {value: s3cr3t-literal}", True),
        ("warehousePassword: [1, 2]", True),
        ("signingKeys: [s3cr3t-one, s3cr3t-two]", True),
        ("tokenTtlSeconds: 3600", False),
        ("tokenRefreshEnabled: true", False),
        ("apiToken: {fromEnv: ACME_ANALYTICS_TOKEN}", False),
    ],
)
def test_pgv701_literal_secrets_of_every_type(
    desired_state_copy: DesiredStateCopy, line: str, flagged: bool
) -> None:
    """Numbers, lists and non-reference mappings under a key that names a secret are
    literals too; a number under `tokenTtlSeconds` is not a secret."""
    repo = desired_state_copy
    repo.replace(
        "plugins/analytics/plugin.yaml",
        "        additionalProperties: false",
        "        additionalProperties: true",
    )
    repo.replace(
        "tenants/acme.yaml",
        "        retentionDays: 730\n",
        f"        {line}\n        retentionDays: 730\n",
    )
    report = repo.validate()
    assert ("PGV701" in codes(report)) is flagged, [f.message for f in report.findings]
    for secret in ("12345678", "s3cr3t"):
        assert_secret_not_shown(report, secret)


def test_a_numeric_secret_failing_the_schema_is_not_echoed(
    desired_state_copy: DesiredStateCopy,
) -> None:
    repo = desired_state_copy
    repo.replace(
        "tenants/globex.yaml",
        "password: {fromEnv: GLOBEX_SMTP_PASSWORD}",
        "password: 98765432",
    )
    report = repo.validate()
    assert {"PGV602", "PGV701"} <= codes(report)
    assert_secret_not_shown(report, "98765432")


# --------------------------------------------------------------------------- holes, as classes

ACME = "tenants/acme.yaml"
NL = "\\n"  # a YAML escape: the value ends with a newline

# (file, old text, new text, code, offset of the finding from where the new text starts)
WHOLE_TEXT_AND_ASCII_DIGITS = {
    "schema-newline": (HOOLI, "schema: tenant_hooli", f'schema: "tenant_hooli{NL}"', "PGV206", 0),
    "schema-public-newline": (HOOLI, "schema: tenant_hooli", f'schema: "public{NL}"', "PGV206", 0),
    "slug-newline": (HOOLI, "name: hooli", f'name: "hooli{NL}"', "PGV208", 0),
    "uuid-newline": (
        HOOLI,
        "id: deb11b4d-6355-4379-b0a2-d69759655852",
        f'id: "deb11b4d-6355-4379-b0a2-d69759655852{NL}"',
        "PGV207",
        0,
    ),
    "permission-newline": (
        INVENTORY,
        "key: inventory:items:read",
        f'key: "inventory:items:read{NL}"',
        "PGV506",
        0,
    ),
    "event-newline": (
        INVENTORY,
        "- inventory.stock.low",
        f'- "inventory.stock.low{NL}"',
        "PGV511",
        2,
    ),
    "platform-topic-newline": (
        PLATFORM,
        "- core.tenant.deleted",
        f'- "core.tenant.deleted{NL}"',
        "PGV511",
        2,
    ),
    "cpu-newline": (INVENTORY, "cpu: 250m", f'cpu: "250m{NL}"', "PGV503", 0),
    "cpu-arabic-digits": (INVENTORY, "cpu: 250m", "cpu: 2\u0665\u0660m", "PGV503", 0),
    "cpu-over-1024-cores": (INVENTORY, "cpu: 250m", 'cpu: "2048"', "PGV503", 0),
    "cpu-huge": (INVENTORY, "cpu: 250m", "cpu: " + "9" * 5000 + "m", "PGV503", 0),
    "memory-newline": (INVENTORY, "memory: 384Mi", f'memory: "384Mi{NL}"', "PGV504", 0),
    "memory-fullwidth-digits": (
        INVENTORY,
        "memory: 384Mi",
        "memory: \uff13\uff18\uff14Mi",
        "PGV504",
        0,
    ),
    "memory-over-1Ti": (INVENTORY, "memory: 384Mi", "memory: 2Ti", "PGV504", 0),
    "memory-under-6Mi": (INVENTORY, "memory: 384Mi", 'memory: "1024"', "PGV504", 0),
    "image-newline": (
        INVENTORY,
        "image: localhost/plexica/inventory:0.9.0",
        f'image: "localhost/plexica/inventory@{DIGEST}{NL}"',
        "PGV309",
        0,
    ),
    "image-space": (
        INVENTORY,
        "image: localhost/plexica/inventory:0.9.0",
        'image: "localhost/plexica/inventory:0.9.0 --privileged"',
        "PGV309",
        0,
    ),
    "probe-path-newline": (
        INVENTORY,
        "readiness: /health/ready",
        f'readiness: "/health/ready{NL}Host: elsewhere"',
        "PGV509",
        0,
    ),
    "remote-entry-newline": (
        INVENTORY,
        "remoteEntry: http://localhost:3000/plugins/inventory/remoteEntry.js",
        f'remoteEntry: "http://localhost:3000/plugins/inventory/remoteEntry.js{NL}"',
        "PGV510",
        0,
    ),
    "topic-config-unicode-digits": (
        CRM,
        'retention.ms: "2592000000"',
        'retention.ms: "259200\u0660\u0660\u0660\u0660"',
        "PGV513",
        0,
    ),
    "topic-config-not-a-number": (
        CRM,
        'retention.ms: "2592000000"',
        'retention.ms: "30d"',
        "PGV513",
        0,
    ),
    "topic-config-over-a-long": (
        CRM,
        'retention.ms: "2592000000"',
        'retention.ms: "99999999999999999999"',
        "PGV513",
        0,
    ),
    "topic-config-word": (
        PLATFORM,
        "cleanup.policy: delete",
        "cleanup.policy: remove",
        "PGV513",
        0,
    ),
    "topic-config-newline": (
        PLATFORM,
        "cleanup.policy: delete",
        f'cleanup.policy: "delete{NL}"',
        "PGV513",
        0,
    ),
    "env-name": (INVENTORY, "LOG_LEVEL: debug", f'"LOG_LEVEL{NL}": debug', "PGV703", 0),
    "env-name-with-equals": (INVENTORY, "LOG_LEVEL: debug", '"A=B": debug', "PGV703", 0),
    "from-env-name": (
        PLATFORM,
        "fromEnv: PLEXICA_PLUGIN_DATABASE_URL",
        f'fromEnv: "PLEXICA_PLUGIN_DATABASE_URL{NL}"',
        "PGV703",
        -2,  # the reference mapping, on the line before
    ),
    "secret-name-leaves-the-directory": (
        ACME,
        "secretRef: {name: acme-smtp, key: password}",
        "secretRef: {name: ../../etc, key: shadow}",
        "PGV704",
        -2,  # `password:` on the line before
    ),
    "secret-key-dot-dot": (
        ACME,
        "secretRef: {name: acme-smtp, key: password}",
        "secretRef: {name: acme-smtp, key: ..}",
        "PGV704",
        -2,
    ),
}


@pytest.mark.parametrize("case", sorted(WHOLE_TEXT_AND_ASCII_DIGITS))
def test_identifiers_and_numbers_are_whole_ascii_text(
    desired_state_copy: DesiredStateCopy, case: str
) -> None:
    """Every pattern is a full match of ASCII text: a trailing newline, a Unicode digit, an
    out-of-range quantity is the rule's finding (not a pass, never a traceback)."""
    rel, old, new, code, offset = WHOLE_TEXT_AND_ASCII_DIGITS[case]
    repo = desired_state_copy
    where = repo.replace(rel, old, new)
    report = repo.validate()
    finding = the(report, code)
    if offset >= 0:
        expected = Location(rel, where.line, (where.column or 1) + offset)
    else:  # the finding is on the mapping that holds the reference, a line up
        expected = Location(rel, where.line - 1, (where.column or 1) + offset)
    assert_finding(finding, code, expected)
    assert finding.subjects or rel == PLATFORM
    assert all(f.code in {code, "PGV302"} for f in report.findings), [
        (f.code, f.message) for f in report.findings
    ]  # PGV302: an image tag no longer matching the version


@pytest.mark.parametrize(
    ("rel", "old", "new"),
    [
        (CRM, "partitions: 6", "partitions: 99999999999"),
        (PLATFORM, "replicationFactor: 1 ", "replicationFactor: 40000 "),
        (PLATFORM, "readyProbes: 3", "readyProbes: 100000"),
        (PLATFORM, "timeoutSeconds: 120", "timeoutSeconds: .inf"),
        (PLATFORM, "probeIntervalSeconds: 1", "probeIntervalSeconds: 0.000001"),
        (PLATFORM, "gracePeriodSeconds: 10", "gracePeriodSeconds: 1.0e+12"),
        ("plugins/billing/plugin.yaml", "timeoutSeconds: 180", "timeoutSeconds: 1.0e+9"),
    ],
)
def test_numbers_the_runtime_or_broker_receive_are_bounded(
    desired_state_copy: DesiredStateCopy, rel: str, old: str, new: str
) -> None:
    repo = desired_state_copy
    where = repo.replace(rel, old, new)
    report = repo.validate()
    assert_finding(the(report, "PGS113"), "PGS113", where)


needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo")


@needs_fifo
@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_pgl011_a_migration_that_is_not_a_regular_file_is_skipped(
    desired_state_copy: DesiredStateCopy, kind: str
) -> None:
    repo = desired_state_copy
    rel = f"{MIGRATIONS}/0003_not_a_file.sql"
    if kind == "fifo":
        os.mkfifo(repo.path(rel))
    else:
        repo.path(rel).mkdir()
    report = repo.validate()  # neither blocks nor raises IsADirectoryError
    only_codes(report, "PGL011")
    finding = the(report, "PGL011")
    assert_finding(finding, "PGL011", Location(rel))
    assert finding.subjects == ("inventory",)
    assert [m.version for m in report.desired.plugins["inventory"].migrations] == ["0001", "0002"]


@needs_fifo
@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_pgl011_a_manifest_file_that_is_not_a_regular_file(
    desired_state_copy: DesiredStateCopy, kind: str
) -> None:
    repo = desired_state_copy
    target = move_manifest_to_file(repo, "inventory", "manifest.json")
    repo.path(target).unlink()
    if kind == "fifo":
        os.mkfifo(repo.path(target))
    else:
        repo.path(target).mkdir()
    report = repo.validate()
    finding = the(report, "PGL011")
    assert_finding(finding, "PGL011", Location(target))
    assert finding.subjects == ("inventory",)


@needs_fifo
def test_pgl011_a_fifo_named_yaml_in_the_repository(desired_state_copy: DesiredStateCopy) -> None:
    repo = desired_state_copy
    os.mkfifo(repo.path("tenants/pipe.yaml"))
    report = repo.validate()
    only_codes(report, "PGL011")
    assert_finding(the(report, "PGL011"), "PGL011", Location("tenants/pipe.yaml"))


@pytest.mark.parametrize(
    ("setting", "fragment"),
    [
        ("pidsLimit: -1", "pidsLimit must be a whole number from 1"),  # -1 lifts the limit
        ("pidsLimit: 0", "pidsLimit must be a whole number from 1"),
        ("pidsLimit: true", "pidsLimit must be a whole number from 1"),
        ('tmpfsSize: "1m,exec,suid,dev"', "tmpfsSize must be a size"),  # options are ours
        ('tmpfsSize: "64m\\n"', "tmpfsSize must be a size"),
        ("tmpfsSize: 2048g", "tmpfsSize must be a size"),
        ("drainSeconds: 1.0e+12", "drainSeconds must be a number of seconds"),
        ("drainSeconds: .nan", "drainSeconds must be a number of seconds"),
        ("probeTimeoutSeconds: 0", "probeTimeoutSeconds must be a number of seconds"),
        ("stopTimeoutSeconds: -1", "stopTimeoutSeconds must be a number of seconds"),
        ("restartPolicy: always", "restartPolicy must be one of"),
        ('scope: "prod\\n"', "scope must be a scope name"),
        ("baseUrl: unix:///run/docker sock", "baseUrl must be an engine address"),
        ("netwrok: plexica", "unknown docker runtime setting `netwrok`"),
    ],
)
def test_pgv514_runtime_settings_checked_by_the_provider_at_validate_time(
    desired_state_copy: DesiredStateCopy, setting: str, fragment: str
) -> None:
    repo = desired_state_copy
    where = repo.replace(
        PLATFORM, "    endpointMode: loopback\n", f"    endpointMode: loopback\n    {setting}\n"
    )
    report = repo.validate()
    only_codes(report, "PGV514")
    finding = the(report, "PGV514")
    assert_finding(finding, "PGV514", Location(PLATFORM, where.line + 1, 5))
    assert fragment in finding.message


def test_the_docker_provider_refuses_the_same_settings_when_it_is_built() -> None:
    from plexica_gitops.runtime.provider import ProviderError, load_provider

    for settings in ({"pidsLimit": -1}, {"tmpfsSize": "1m,exec,suid,dev"}):
        with pytest.raises(ProviderError, match="must be"):
            load_provider("docker", settings)  # builds no client: no engine needed


def test_pgv515_runtime_provider_not_installed(desired_state_copy: DesiredStateCopy) -> None:
    repo = desired_state_copy
    where = repo.replace(PLATFORM, "provider: docker", "provider: nomad")
    report = repo.validate()
    only_codes(report, "PGV515")
    finding = the(report, "PGV515")
    assert_finding(finding, "PGV515", where, Severity.WARNING)
    assert report.valid


def test_a_settings_check_given_by_the_caller_is_the_one_used(
    desired_state_copy: DesiredStateCopy,
) -> None:
    from plexica_gitops.runtime.provider import SettingProblem

    def refuse(provider: str, settings: object) -> list[SettingProblem]:
        return [SettingProblem("endpointMode", f"{provider}: endpointMode refused", "fix it")]

    report = validate_directory(desired_state_copy.root, refuse)
    only_codes(report, "PGV514")
    assert the(report, "PGV514").message == "docker: endpointMode refused"


def test_without_a_settings_check_the_settings_are_said_not_checked(
    desired_state_copy: DesiredStateCopy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(validate, "_registered", [])  # as if runtime/ were never imported
    report = validate_directory(desired_state_copy.root)
    only_codes(report, "PGV515")
    assert "not checked" in the(report, "PGV515").message
    assert report.valid


# --------------------------------------------------------------------------- one error, all errors


def test_a_tenant_typo_does_not_hide_the_tenant_s_other_errors(
    desired_state_copy: DesiredStateCopy,
) -> None:
    """An unknown field (PGS110) in a tenant file; the same run still reports that
    tenant's configuration error (PGV602) and its undeclared plugin (PGV603)."""
    repo = desired_state_copy
    repo.replace(ACME, "  displayName: Acme Corporation", "  displayNme: Acme Corporation")
    typo = repo.locate(ACME, "displayNme")
    config = repo.replace(ACME, "staleDealDays: 21", "staleDealDays: 0")
    repo.write(ACME, repo.text(ACME) + "    payroll:\n      enabled: true\n")
    report = repo.validate()
    only_codes(report, "PGS110", "PGV602", "PGV603")
    assert_finding(the(report, "PGS110"), "PGS110", typo)
    assert_finding(the(report, "PGV602"), "PGV602", config)
    assert the(report, "PGV603").subjects == ("acme", "payroll")


def test_a_tenant_with_a_broken_required_field_is_still_checked(
    desired_state_copy: DesiredStateCopy,
) -> None:
    repo = desired_state_copy
    where = repo.replace(HOOLI, "id: deb11b4d-6355-4379-b0a2-d69759655852", "id: [1, 2]")
    add_hooli_plugin(repo, "    payroll:\n      enabled: true\n")
    report = repo.validate()
    only_codes(report, "PGS111", "PGV603")  # not PGV207 about the placeholder id
    assert_finding(the(report, "PGS111"), "PGS111", where)
    assert the(report, "PGS111").subjects == ("hooli",)


def test_a_typo_in_a_binding_does_not_add_guesses_about_the_binding(
    desired_state_copy: DesiredStateCopy,
) -> None:
    """`enabeld: true` under inventory (desired installed): the typo is reported; nothing
    is said about the binding it would have enabled or disabled."""
    repo = desired_state_copy
    where = add_hooli_plugin(repo, "    inventory:\n      enabeld: true\n")
    report = repo.validate()
    only_codes(report, "PGS110")
    assert the(report, "PGS110").location == Location(HOOLI, where.line + 1, 7)


def test_a_plugin_rejected_beyond_repair_is_not_called_undeclared(
    desired_state_copy: DesiredStateCopy,
) -> None:
    """contacts loses its whole `api` mapping (required): contacts cannot be built, but
    the tenants enabling it and the plugins depending on it are not told it is missing."""
    repo = desired_state_copy
    rel = "plugins/contacts/plugin.yaml"
    text = repo.text(rel)
    start = text.index("    api:\n")
    end = text.index("\n    ", text.index("port:", start))
    repo.write(rel, text[:start] + text[end + 1 :])
    report = repo.validate()
    only_codes(report, "PGS112")
    assert the(report, "PGS112").subjects == ("contacts",)


def test_a_platform_schema_error_does_not_hide_the_platform_s_other_errors(
    desired_state_copy: DesiredStateCopy,
) -> None:
    repo = desired_state_copy
    repo.replace(PLATFORM, "  prune: false\n", '  prune: "no"\n')
    topic = repo.replace(PLATFORM, "- core.tenant.deleted", '- "core tenant deleted"')
    report = repo.validate()
    only_codes(report, "PGS111", "PGV511")
    where = Location(PLATFORM, topic.line, (topic.column or 1) + 2)
    assert_finding(the(report, "PGV511"), "PGV511", where)


BREAKAGES = [
    (HOOLI, "  displayName: Hooli\n", "  displayNme: Hooli\n"),  # PGS110
    (HOOLI, "kind: Tenant", "kind: Tennant"),  # PGS102
    (HOOLI, "kind: Tenant\n", ""),  # PGS101
    (HOOLI, "apiVersion: plexica.io/v1alpha1", "apiVersion: plexica.io/v1"),  # PGS103
    (HOOLI, "  status: active", "  status: paused"),  # PGS113
    (HOOLI, "      enabled: true\n      configuration: {}", "      enabled: yes please"),
    (HOOLI, "spec:\n", "spec:\n  [\n"),  # PGL001
    (HOOLI, "  schema: tenant_hooli\n", "  schema: tenant_hooli\n  schema: again\n"),  # PGL002
    (INVENTORY, "  replicas: 1", "  replicas: 0"),
    (INVENTORY, "    id: inventory", "    id: stock"),  # PGS131
    (INVENTORY, "  manifest:\n", "  manifestFile: nowhere.yaml\n  manifest:\n"),  # PGS130
    (INVENTORY, "      port: 8080", "      port: eighty"),
    (INVENTORY, "      type: node", "      type: deno"),
    (INVENTORY, "    version: 0.9.0", "    version: 0.9"),
    (INVENTORY, "      path: migrations", "      path: ../migrations"),  # PGV801
    (INVENTORY, "      path: migrations", "      path: nowhere"),  # PGV804
    (INVENTORY, "kind: Plugin", "kind: !!python/object:os.system Plugin"),  # PGL006
    (CRM, '        retention.ms: "2592000000"', "        retention.ms: 2592000000"),
    (ACME, "        staleDealDays: 21", "        staleDealDays: many"),
    (PLATFORM, "  version: 2.4.0", "  version: [2.4.0"),
]


@pytest.mark.parametrize(("rel", "old", "new"), BREAKAGES)
def test_every_finding_in_a_plugin_or_tenant_file_names_its_subjects(
    desired_state_copy: DesiredStateCopy, rel: str, old: str, new: str
) -> None:
    repo = desired_state_copy
    repo.replace(rel, old, new)
    repo.write(f"{MIGRATIONS}/0003_Bad-Name.sql", "SELECT 1;\n")  # PGV802 as well
    report = repo.validate()
    assert not report.valid
    assert_subjects_named(report)


def assert_subjects_named(report: ValidationReport) -> None:
    """Every finding located in plugins/… or tenants/… names a plugin or tenant."""
    for finding in report.findings:
        file = finding.location.file if finding.location else ""
        if file.startswith(("plugins/", "tenants/")):
            assert finding.subjects, (finding.code, str(finding.location), finding.message)


# --------------------------------------------------------------------------- PGV602 shows the value


def test_pgv602_shows_the_offending_value_when_it_is_not_secret(
    desired_state_copy: DesiredStateCopy,
) -> None:
    repo = desired_state_copy
    repo.replace(ACME, "timezone: America/New_York", "timezone: America/New York")
    report = repo.validate()
    finding = the(report, "PGV602")
    assert "'America/New York' does not match" in finding.message


def test_pgv602_clips_a_long_value(desired_state_copy: DesiredStateCopy) -> None:
    repo = desired_state_copy
    repo.replace(ACME, "timezone: America/New_York", "timezone: " + "x y" * 20_000)
    finding = the(repo.validate(), "PGV602")
    assert "'x yx yx y" in finding.message
    assert len(finding.message) < 400


def test_pgv602_masks_secrets_inside_a_shown_value(desired_state_copy: DesiredStateCopy) -> None:
    repo = desired_state_copy
    repo.replace(
        ACME,
        "dashboards: [pipeline, win-rate, revenue, overdue-invoices]",
        "dashboards: [pipeline, {apiToken: tok-SECRET-1, feed: 'https://u:pw-SECRET-2@h/x'}]",
    )
    report = repo.validate()
    shown = [f for f in all_with(report, "PGV602") if "dashboards.1" in f.message]
    assert shown and all("(sensitive)" in f.message for f in shown)
    assert_secret_not_shown(report, "tok-SECRET-1")
    assert_secret_not_shown(report, "pw-SECRET-2")


def test_pgv602_never_shows_a_value_the_schema_marks_secret(
    desired_state_copy: DesiredStateCopy,
) -> None:
    repo = desired_state_copy
    repo.replace(
        "plugins/analytics/plugin.yaml",
        '            pattern: "^[A-Za-z_]+(/[A-Za-z_]+)*$"',
        '            pattern: "^[A-Za-z_]+(/[A-Za-z_]+)*$"\n            writeOnly: true',
    )
    repo.replace(ACME, "timezone: America/New_York", "timezone: hunter 2")
    report = repo.validate()
    assert "not shown" in the(report, "PGV602").message
    assert_secret_not_shown(report, "hunter 2")


@pytest.mark.parametrize("url", ["http://[x", "http://u:p@[::1"])
def test_an_unreadable_url_is_a_finding_not_a_traceback(
    desired_state_copy: DesiredStateCopy, url: str
) -> None:
    repo = desired_state_copy
    repo.replace(ACME, "timezone: America/New_York", f"timezone: '{url}'")
    repo.replace(
        INVENTORY,
        "remoteEntry: http://localhost:3000/plugins/inventory/remoteEntry.js",
        f"remoteEntry: '{url}'",
    )
    report = repo.validate()
    assert {"PGV602", "PGV510"} <= codes(report)


def test_mask_copes_with_any_depth() -> None:
    """A configuration nested 600 levels (from the store, say) is masked, not a
    RecursionError; what is masked is as before."""
    from plexica_gitops.sensitive import SENSITIVE, mask

    deep: object = {"apiToken": "s3cr3t", "ok": 1}
    for _ in range(600):
        deep = {"a": [deep]}
    masked = mask(deep)
    for _ in range(600):
        assert isinstance(masked, dict)
        masked = masked["a"][0]
    assert masked == {"apiToken": SENSITIVE, "ok": 1}
    reference = {"secretRef": {"name": "n", "key": "k"}}
    assert mask({"password": reference, "list": [reference, 2]}) == {
        "password": reference,
        "list": [reference, 2],
    }


# --------------------------------------------------------------------------- autoscaling, egress


def test_declared_autoscaling_and_egress_validate_clean_on_kubernetes(
    desired_state_copy: DesiredStateCopy,
) -> None:
    repo = desired_state_copy
    docker = "    provider: docker\n    network: plexica\n    endpointMode: loopback\n"
    repo.replace(PLATFORM, docker, "    provider: kubernetes\n")
    repo.replace(
        INVENTORY,
        "  replicas: 1\n",
        "  autoscaling: {minReplicas: 1, maxReplicas: 4, targetCPUUtilizationPercentage: 70}\n"
        "  network:\n    egress:\n      - {cidr: 192.0.2.0/24, ports: [443]}\n"
        "      - podLabels: {app: redis}\n        namespaceLabels: {team: cache}\n"
        "        ports: [6379]\n",
    )
    report = repo.validate()
    assert report.findings == []
    spec = report.desired.plugins["inventory"].document.spec
    assert spec.autoscaling is not None
    assert (spec.autoscaling.min_replicas, spec.autoscaling.max_replicas) == (1, 4)
    assert spec.autoscaling.target_cpu_utilization_percentage == 70
    assert [rule.cidr for rule in spec.network.egress] == ["192.0.2.0/24", None]


def test_pgv516_autoscaling_minimum_above_its_maximum(desired_state_copy: DesiredStateCopy) -> None:
    repo = desired_state_copy
    repo.replace(
        INVENTORY, "  replicas: 1\n", "  autoscaling:\n    minReplicas: 5\n    maxReplicas: 2\n"
    )
    where = repo.locate(INVENTORY, "minReplicas: 5")
    report = repo.validate()
    only_codes(report, "PGV516", "PGV518")  # PGV518: the example runs on docker
    finding = the(report, "PGV516")
    assert_finding(finding, "PGV516", where)
    assert "minReplicas 5 is above maxReplicas 2" in finding.message
    assert finding.subjects == ("inventory",)


def test_pgv516_replicas_outside_the_autoscaling_range(
    desired_state_copy: DesiredStateCopy,
) -> None:
    repo = desired_state_copy
    repo.replace(
        INVENTORY,
        "  replicas: 1\n",
        "  replicas: 1\n  autoscaling: {minReplicas: 2, maxReplicas: 3}\n",
    )
    where = repo.locate(INVENTORY, "replicas: 1")
    report = repo.validate()
    only_codes(report, "PGV516", "PGV518")
    assert_finding(the(report, "PGV516"), "PGV516", where)
    assert "outside its autoscaling range 2..3" in the(report, "PGV516").message


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("minReplicas", 0),
        ("maxReplicas", 101),
        ("targetCPUUtilizationPercentage", 0),
        ("targetCPUUtilizationPercentage", 101),
    ],
)
def test_autoscaling_bounds_are_schema_errors_at_the_value(
    desired_state_copy: DesiredStateCopy, field: str, value: int
) -> None:
    repo = desired_state_copy
    values = {"minReplicas": 1, "maxReplicas": 3, field: value}
    lines = "".join(f"    {key}: {number}\n" for key, number in values.items())
    repo.replace(INVENTORY, "  replicas: 1\n", f"  autoscaling:\n{lines}")
    report = repo.validate()
    [finding] = [f for f in report.findings if f.code.startswith("PGS")]
    assert finding.location.file == INVENTORY
    assert finding.location == repo.locate(INVENTORY, f"{field}: {value}")
    assert not report.valid


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        ("{cidr: 10.0.0.300/8}", "is not a network"),
        ("{cidr: 10.0.0.1/8}", "is not a network"),
        ("{ports: [443]}", "either podLabels/namespaceLabels or a cidr"),
        ("{cidr: 10.0.0.0/8, podLabels: {app: x}}", "either podLabels/namespaceLabels or a cidr"),
        ("{podLabels: {'bad key!': x}}", "is not a label name"),
        ("{namespaceLabels: {team: 'a b'}}", "is not a label value"),
    ],
)
def test_pgv517_egress_destination_a_network_policy_cannot_hold(
    desired_state_copy: DesiredStateCopy, rule: str, problem: str
) -> None:
    repo = desired_state_copy
    repo.replace(
        INVENTORY,
        "  replicas: 1\n",
        f"  replicas: 1\n  network:\n    egress:\n      - {{cidr: 192.0.2.0/24}}\n      - {rule}\n",
    )
    where = repo.locate(INVENTORY, f"- {rule}", offset=2)
    report = repo.validate()
    only_codes(report, "PGV517", "PGV518")
    finding = the(report, "PGV517")
    assert_finding(finding, "PGV517", where)
    assert "network.egress[1]" in finding.message and problem in finding.message


def test_pgv518_docker_warns_that_it_ignores_autoscaling_and_egress(
    desired_state_copy: DesiredStateCopy,
) -> None:
    repo = desired_state_copy
    repo.replace(
        INVENTORY,
        "  replicas: 1\n",
        "  autoscaling: {minReplicas: 1, maxReplicas: 3}\n"
        "  network: {egress: [{cidr: 192.0.2.0/24}]}\n",
    )
    report = repo.validate()
    assert report.valid  # warnings only: the plugin runs, unscaled and unrestricted
    found = {f.message.split(" declares ")[1].split(",")[0]: f for f in all_with(report, "PGV518")}
    assert sorted(found) == ["autoscaling", "network"]
    assert_finding(
        found["autoscaling"],
        "PGV518",
        repo.locate(INVENTORY, "autoscaling:"),
        Severity.WARNING,
    )
    assert "never autoscales" in found["autoscaling"].message
    assert "not enforced" in found["network"].message
