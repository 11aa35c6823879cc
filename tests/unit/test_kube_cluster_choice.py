"""The switch of the Kubernetes tests (tests/kube_cluster.py): `PLEXICA_TEST_KUBECONFIG`
points them at a cluster of one's own instead of the devenv control plane. Checked without
any cluster: which one the fixture yields is decided before anything is reached."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from kube_cluster import CONTEXT_ENV, KUBECONFIG_ENV, ExternalCluster, chosen_cluster

pytest_plugins = ["pytester"]


def test_without_the_variable_the_devenv_control_plane_is_used() -> None:
    assert chosen_cluster({}) is None
    assert chosen_cluster({KUBECONFIG_ENV: ""}) is None
    assert chosen_cluster({"KUBECONFIG": "/etc/kubernetes/admin.conf"}) is None  # never


def test_the_given_kubeconfig_and_context_are_chosen(tmp_path: Path) -> None:
    config = tmp_path / "staging.yaml"
    config.write_text("apiVersion: v1\nkind: Config\n", encoding="utf-8")
    chosen = chosen_cluster({KUBECONFIG_ENV: str(config), CONTEXT_ENV: "staging"})
    assert chosen == ExternalCluster(config.resolve(), "staging")
    assert chosen_cluster({KUBECONFIG_ENV: str(config)}) == ExternalCluster(config.resolve())


def test_a_kubeconfig_that_is_not_there_fails_instead_of_testing_the_devenv_one(
    tmp_path: Path,
) -> None:
    with pytest.raises(pytest.fail.Exception, match="no such kubeconfig file"):
        chosen_cluster({KUBECONFIG_ENV: str(tmp_path / "missing.yaml")})


def test_the_fixture_yields_the_given_cluster_and_starts_nothing(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "kubeconfig"
    config.write_text("apiVersion: v1\nkind: Config\n", encoding="utf-8")
    monkeypatch.setenv(KUBECONFIG_ENV, str(config))
    monkeypatch.setenv(CONTEXT_ENV, "team-a")
    # No binaries: were the devenv cluster chosen, the fixture would fail ("not built").
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    pytester.makeconftest('pytest_plugins = ["kube_cluster"]\n')
    pytester.makepyfile(
        textwrap.dedent(
            f"""
            from pathlib import Path
            from kube_cluster import ExternalCluster

            def test_chosen(kube_cluster):
                assert kube_cluster == ExternalCluster(Path({str(config.resolve())!r}), "team-a")
            """
        )
    )
    result = pytester.runpytest_inprocess("-p", "no:randomly", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
