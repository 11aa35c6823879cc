"""Desired state read from git objects (GitTree) and from a directory (DirectoryTree), on
real repositories made by the tests."""

from __future__ import annotations

import os
import shutil
import stat
import threading
import tracemalloc
from pathlib import Path

import pytest
from dulwich.objects import Commit
from dulwich.repo import Repo
from git_repos import (
    DesiredRepo,
    commit_all,
    desired_repo,
    git,
    http_backend,
    init,
    serve_git_http,
)

from plexica_gitops.desired.build import build_desired_state
from plexica_gitops.desired.validate import ValidationReport, validate_directory
from plexica_gitops.source import loader
from plexica_gitops.source.git import (
    AmbiguousRef,
    AuthenticationFailed,
    CredentialsInUrl,
    GitTree,
    PathNotInTree,
    RefNotFound,
    RemoteUnreachable,
    RepositoryNotFound,
    scrub_url,
)
from plexica_gitops.source.tree import (
    DirectoryRevision,
    DirectoryTree,
    Entry,
    EntryKind,
    FileTooLarge,
    GitRevision,
    LinkProblem,
    LinkProblemKind,
    NotARegularFile,
    PathNotFound,
    SourceTree,
    content_hash,
    walk_followed,
)

LIMIT = 4 * 1024 * 1024


@pytest.fixture
def repo(tmp_path: Path) -> DesiredRepo:
    return desired_repo(tmp_path)


def files_of(tree: SourceTree) -> dict[str, bytes]:
    return {e.path: tree.read(e.path, LIMIT) for e in tree.walk() if e.kind is EntryKind.FILE}


def clone_at(source: Path, target: Path, sha: str) -> Path:
    git(source.parent, "clone", "-q", str(source), str(target))
    git(target, "checkout", "-q", sha)
    git(target, "submodule", "update", "-q", "--init")
    return target


# --------------------------------------------------------------------------- revisions


def test_each_ref_gives_the_files_of_its_commit(repo: DesiredRepo) -> None:
    with GitTree(repo.work, "v1", "desired-state") as first:
        assert files_of(first) == repo.first_files
    with GitTree(repo.work, "main", "desired-state") as second:
        assert files_of(second) == repo.second_files
    assert "tenants/umbrella.yaml" in repo.first_files
    assert "tenants/umbrella.yaml" not in repo.second_files


def test_refs_resolve_to_commits_rendered_as_flux_does(repo: DesiredRepo) -> None:
    tag_object = git(repo.work, "rev-parse", "v1")
    assert tag_object != repo.first  # an annotated tag: its own object, peeled below
    cases = {
        "main": f"main@sha1:{repo.second}",
        "HEAD": f"main@sha1:{repo.second}",  # HEAD is named by its branch
        "refs/heads/main": f"refs/heads/main@sha1:{repo.second}",
        "v1": f"v1@sha1:{repo.first}",
        "refs/tags/v1": f"refs/tags/v1@sha1:{repo.first}",
        "light": f"light@sha1:{repo.first}",
        repo.first: f"sha1:{repo.first}",
        repo.first[:7]: f"sha1:{repo.first}",
        repo.second.upper(): f"sha1:{repo.second}",
    }
    for ref, expected in cases.items():
        with GitTree(repo.work, ref) as tree:
            assert str(tree.revision) == expected, ref
            assert tree.revision_of(["platform.yaml"]) == tree.revision


def test_detached_head_has_no_ref_name(repo: DesiredRepo) -> None:
    git(repo.work, "checkout", "-q", repo.first)
    with GitTree(repo.work, "HEAD") as tree:
        assert tree.revision == GitRevision(repo.first, None)
        assert str(tree.revision) == f"sha1:{repo.first}"


def test_bare_repository_reads_like_its_work_tree(repo: DesiredRepo, tmp_path: Path) -> None:
    bare = tmp_path / "bare.git"
    git(tmp_path, "clone", "-q", "--bare", str(repo.work), str(bare))
    with GitTree(bare, "main", "desired-state") as tree:
        assert files_of(tree) == repo.second_files


def test_unknown_ref_is_a_typed_error_naming_close_refs(repo: DesiredRepo) -> None:
    with pytest.raises(RefNotFound) as caught:
        GitTree(repo.work, "mian")
    assert caught.value.close[0] == "main"
    assert "ref 'mian' not found" in str(caught.value)
    assert "hint: Did you mean main" in str(caught.value)
    with pytest.raises(RefNotFound) as caught:
        GitTree(repo.work, "f" * 40)  # a well-formed sha that is not there
    assert "not found" in caught.value.message


def test_ambiguous_abbreviated_sha(tmp_path: Path) -> None:
    work = init(tmp_path / "ambiguous")
    base = commit_all(work, "base")
    with Repo(str(work)) as dulwich_repo:
        tree = dulwich_repo[base.encode()].tree
        by_prefix: dict[str, Commit] = {}
        for n in range(100_000):  # two commits whose shas share 4 hex digits
            commit = Commit()
            commit.tree, commit.message = tree, f"candidate {n}\n".encode()
            commit.author = commit.committer = b"Test <test@example.invalid>"
            commit.author_time = commit.commit_time = 1_700_000_000
            commit.author_timezone = commit.commit_timezone = 0
            prefix = commit.id.decode()[:4]
            if prefix in by_prefix:
                dulwich_repo.object_store.add_objects([(by_prefix[prefix], None), (commit, None)])
                break
            by_prefix[prefix] = commit
    with pytest.raises(AmbiguousRef) as caught:
        GitTree(work, prefix)
    assert "matches 2 commits" in caught.value.message
    assert caught.value.hint == "Give more digits of the sha, or the full 40."
    with GitTree(work, commit.id.decode()[:12]) as unique:
        assert unique.revision.sha == commit.id.decode()


def test_missing_repository_and_path_are_typed_errors(repo: DesiredRepo, tmp_path: Path) -> None:
    with pytest.raises(RepositoryNotFound, match="does not exist"):
        GitTree(tmp_path / "nowhere", "main")
    (tmp_path / "plain").mkdir()
    with pytest.raises(RepositoryNotFound, match="not a git repository"):
        GitTree(tmp_path / "plain", "main")
    with pytest.raises(PathNotInTree) as caught:
        GitTree(repo.work, "main", "desried-state")
    assert "does not exist" in caught.value.message
    assert "desired-state" in caught.value.hint
    with pytest.raises(PathNotInTree, match="is not a directory"):
        GitTree(repo.work, "main", "README.md")


# --------------------------------------------------------------------------- entries


def _link_repo(tmp_path: Path) -> tuple[Path, str]:
    """A repository whose desired-state/ holds every kind of entry."""
    sub = init(tmp_path / "sub-origin")
    (sub / "x.yaml").write_text("a: 1\n")
    commit_all(sub, "sub")
    work = init(tmp_path / "links")
    root = work / "desired-state"
    shutil.copytree(Path(__file__).resolve().parents[2] / "desired-state", root)
    tenants = root / "tenants"
    (tenants / "alias.yaml").symlink_to("acme.yaml")
    (root / "more").symlink_to("tenants")
    (tenants / "back.yaml").symlink_to("../../desired-state/platform.yaml")  # out and in
    (tenants / "up.yaml").symlink_to("../platform.yaml")
    (tenants / "escape.yaml").symlink_to("../../README.md")
    (tenants / "absolute.yaml").symlink_to("/etc/hostname")
    (tenants / "far.yaml").symlink_to("../../../../outside.yaml")
    (tenants / "dangling.yaml").symlink_to("nope.yaml")
    (tenants / "loop-a.yaml").symlink_to("loop-b.yaml")
    (tenants / "loop-b.yaml").symlink_to("loop-a.yaml")
    (tenants / "through.yaml").symlink_to("../more/acme.yaml")
    (tenants / "file-as-dir.yaml").symlink_to("acme.yaml/x")
    hook = root / "hook.sh"
    hook.write_text("#!/bin/sh\n")
    hook.chmod(0o755)
    (root / ".hidden.yaml").write_text("kind: Hidden\n")
    (work / "README.md").write_text("readme\n")
    git(work, "submodule", "add", "-q", str(sub), "desired-state/vendor")
    return work, commit_all(work, "every kind of entry")


def test_walk_lists_kinds_sizes_and_modes(tmp_path: Path) -> None:
    work, _ = _link_repo(tmp_path)
    with GitTree(work, "main", "desired-state") as tree:
        entries = {e.path: e for e in tree.walk()}
    assert entries["tenants/acme.yaml"] == Entry(
        "tenants/acme.yaml",
        EntryKind.FILE,
        (work / "desired-state/tenants/acme.yaml").stat().st_size,
    )
    assert entries["hook.sh"].executable and entries["hook.sh"].kind is EntryKind.FILE
    assert entries["tenants/alias.yaml"] == Entry("tenants/alias.yaml", EntryKind.SYMLINK, 9)
    assert entries["more"].kind is EntryKind.SYMLINK
    assert entries["plugins"].kind is EntryKind.DIRECTORY
    assert entries["vendor"] == Entry("vendor", EntryKind.SUBMODULE)
    assert ".hidden.yaml" not in entries
    paths = list(entries)
    assert paths == sorted(paths)


def test_symlinks_resolve_inside_and_are_refused_outside(tmp_path: Path) -> None:
    work, sha = _link_repo(tmp_path)
    checkout = clone_at(work, tmp_path / "checkout", sha)
    expected: dict[str, str | LinkProblemKind] = {
        "tenants/alias.yaml": "tenants/acme.yaml",
        "more": "tenants",
        "more/acme.yaml": "tenants/acme.yaml",
        "tenants/through.yaml": "tenants/acme.yaml",
        "tenants/back.yaml": "platform.yaml",
        "tenants/up.yaml": "platform.yaml",
        "tenants/escape.yaml": LinkProblemKind.ESCAPES,
        "tenants/absolute.yaml": LinkProblemKind.ESCAPES,
        "tenants/far.yaml": LinkProblemKind.ESCAPES,
        "tenants/dangling.yaml": LinkProblemKind.DANGLING,
        "tenants/file-as-dir.yaml": LinkProblemKind.DANGLING,
        "tenants/loop-a.yaml": LinkProblemKind.LOOP,
        "tenants/acme.yaml": "tenants/acme.yaml",
        "tenants/../platform.yaml": "platform.yaml",
        "..": LinkProblemKind.ESCAPES,
    }
    with (
        GitTree(work, "main", "desired-state") as in_git,
        DirectoryTree(checkout / "desired-state") as on_disk,
    ):
        for tree in (in_git, on_disk):
            for path, want in expected.items():
                got = tree.resolve(path)
                if isinstance(want, LinkProblemKind):
                    assert isinstance(got, LinkProblem) and got.kind is want, (tree, path, got)
                else:
                    assert isinstance(got, Entry) and got.path == want, (tree, path, got)
            target = tree.resolve("tenants/alias.yaml")
            assert isinstance(target, Entry)
            acme = (checkout / "desired-state/tenants/acme.yaml").read_bytes()
            assert tree.read(target.path, LIMIT) == acme


def test_read_refuses_links_submodules_and_missing_paths(tmp_path: Path) -> None:
    work, sha = _link_repo(tmp_path)
    checkout = clone_at(work, tmp_path / "checkout", sha)
    with (
        GitTree(work, "main", "desired-state") as in_git,
        DirectoryTree(checkout / "desired-state") as on_disk,
    ):
        for tree in (in_git, on_disk):
            with pytest.raises(NotARegularFile) as caught:
                tree.read("tenants/alias.yaml", LIMIT)
            assert caught.value.kind is EntryKind.SYMLINK
            with pytest.raises(NotARegularFile) as caught:
                tree.read("vendor", LIMIT)
            assert caught.value.kind is EntryKind.SUBMODULE
            with pytest.raises(NotARegularFile):
                tree.read("plugins", LIMIT)
            with pytest.raises(PathNotFound):
                tree.read("more/acme.yaml", LIMIT)  # through a symlink: resolve first
            with pytest.raises(PathNotFound):
                tree.read("tenants/nope.yaml", LIMIT)
            with pytest.raises(PathNotFound):
                tree.read("../README.md", LIMIT)
            with pytest.raises(FileTooLarge) as too_large:
                tree.read("platform.yaml", 100)
            assert too_large.value.limit == 100
            assert too_large.value.size == (checkout / "desired-state/platform.yaml").stat().st_size
            assert tree.read(".hidden.yaml", LIMIT) == b"kind: Hidden\n"  # read, not walked
            assert tree.entry("more/acme.yaml") is None  # entry() follows no link either
            assert tree.entry("more") == Entry("more", EntryKind.SYMLINK, len("tenants"))
            assert tree.entry("vendor") == Entry("vendor", EntryKind.SUBMODULE)


def test_a_clean_checkout_walks_and_reads_as_its_commit(tmp_path: Path) -> None:
    work, sha = _link_repo(tmp_path)
    checkout = clone_at(work, tmp_path / "checkout", sha)
    for path in ("desired-state", None):
        with (
            GitTree(work, sha, path) as in_git,
            DirectoryTree(checkout / (path or "")) as on_disk,
        ):
            assert on_disk.walk() == in_git.walk()
            assert files_of(on_disk) == files_of(in_git)


def test_example_checkout_walks_as_its_commit_at_both_refs(
    repo: DesiredRepo, tmp_path: Path
) -> None:
    for n, sha in enumerate((repo.first, repo.second)):
        checkout = clone_at(repo.work, tmp_path / f"checkout-{n}", sha)
        with (
            GitTree(repo.work, sha, "desired-state") as in_git,
            DirectoryTree(checkout / "desired-state") as on_disk,
        ):
            assert on_disk.walk() == in_git.walk()


# --------------------------------------------------------------------------- big blobs


def _big_blob_repo(tmp_path: Path, size: int) -> Path:
    work = init(tmp_path / "big")
    (work / "platform.yaml").write_text("kind: Platform\n")
    (work / "huge.yaml").write_bytes(b"# " + b"x" * (size - 3) + b"\n")
    commit_all(work, "a big file")
    return work


@pytest.mark.parametrize("packed", [False, True], ids=["loose", "packed"])
def test_a_blob_over_the_limit_is_refused_without_inflating_it(
    tmp_path: Path, packed: bool
) -> None:
    size = 40 * 1024 * 1024
    work = _big_blob_repo(tmp_path, size)
    if packed:
        git(work, "gc", "-q")
    with GitTree(work, "main") as tree:
        tracemalloc.start()
        try:
            entries = {e.path: e for e in tree.walk()}
            with pytest.raises(FileTooLarge) as caught:
                tree.read("huge.yaml", LIMIT)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert entries["huge.yaml"].size == size
        assert caught.value.size == size and caught.value.limit == LIMIT
        assert peak < 2 * 1024 * 1024  # the 40 MB blob was never inflated
        assert tree.read("platform.yaml", LIMIT) == b"kind: Platform\n"


def test_sizes_of_delta_compressed_blobs_are_their_inflated_sizes(tmp_path: Path) -> None:
    work = init(tmp_path / "deltas")
    text = "".join(f"line {n}: the tenant configuration value number {n}\n" for n in range(3000))
    for version in range(6):
        (work / "tenants.yaml").write_text(text + f"# version {version}\n" * (version + 1))
        (work / f"v{version}.yaml").write_text(text[: 1000 * (version + 1)])
        commit_all(work, f"version {version}")
    git(work, "gc", "-q", "--aggressive")
    verify = git(work, "verify-pack", "-v", *map(str, (work / ".git/objects/pack").glob("*.idx")))
    assert "chain length" in verify  # some blobs are stored as deltas
    for commit in git(work, "rev-list", "main").split():
        with GitTree(work, commit) as tree:
            for entry in tree.walk():
                blob = git(work, "rev-parse", f"{commit}:{entry.path}")
                assert entry.size == int(git(work, "cat-file", "-s", blob)), entry.path


# --------------------------------------------------------------------------- remotes


def _bare_remote(repo: DesiredRepo, tmp_path: Path) -> Path:
    bare = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(repo.work), str(bare))
    return bare


def _objects_in(mirror: Path) -> int:
    """Distinct objects (a thin pack is completed with copies of bases the mirror had)."""
    listing = git(mirror, "cat-file", "--batch-all-objects", "--batch-check=%(objectname)")
    return len(set(listing.split()))


def test_file_url_is_fetched_into_the_cache_then_incrementally(
    repo: DesiredRepo, tmp_path: Path
) -> None:
    bare = _bare_remote(repo, tmp_path)
    cache = tmp_path / "cache"
    url = bare.as_uri()
    with GitTree(url, "main", "desired-state", cache_dir=cache, env={}) as tree:
        assert str(tree.revision) == f"main@sha1:{repo.second}"
        assert files_of(tree) == repo.second_files
        mirror = tree.mirror_path
    assert mirror is not None and mirror.parent == cache
    first_fetch = _objects_in(mirror)
    assert first_fetch > 40  # the whole example desired state

    tenant = repo.work / "desired-state/tenants/acme.yaml"
    tenant.write_text(tenant.read_text() + "# edited\n")
    third = commit_all(repo.work, "acme edited")
    git(repo.work, "push", "-q", str(bare), "main")
    with GitTree(url, "main", "desired-state", cache_dir=cache, env={}) as tree:
        assert tree.revision == GitRevision(third, "main")
        assert tree.read("tenants/acme.yaml", LIMIT).endswith(b"# edited\n")
        assert tree.mirror_path == mirror
    # commit, root tree, desired-state/, tenants/ and the one blob: nothing sent twice
    assert _objects_in(mirror) - first_fetch == 5


def test_a_broken_cache_entry_is_rebuilt(repo: DesiredRepo, tmp_path: Path) -> None:
    url = _bare_remote(repo, tmp_path).as_uri()
    cache = tmp_path / "cache"
    with GitTree(url, "main", cache_dir=cache, env={}) as tree:
        mirror = tree.mirror_path
    assert mirror is not None
    shutil.rmtree(mirror)
    (mirror / "objects").mkdir(parents=True)  # what a crash during the first fetch leaves
    with GitTree(url, "main", "desired-state", cache_dir=cache, env={}) as tree:
        assert files_of(tree) == repo.second_files


def test_remote_tags_old_shas_and_cached_commits(repo: DesiredRepo, tmp_path: Path) -> None:
    bare = _bare_remote(repo, tmp_path)
    cache = tmp_path / "cache"
    url = bare.as_uri()
    with GitTree(url, "v1", "desired-state", cache_dir=cache, env={}) as tree:
        assert str(tree.revision) == f"v1@sha1:{repo.first}"
        assert files_of(tree) == repo.first_files
    with GitTree(url, "HEAD", cache_dir=cache, env={}) as tree:
        assert str(tree.revision) == f"main@sha1:{repo.second}"
    with GitTree(url, repo.second, cache_dir=tmp_path / "tip-cache", env={}) as tree:
        assert str(tree.revision) == f"sha1:{repo.second}"  # the tip of main: fetched as main
        assert tree.mirror_path is not None
        assert git(tree.mirror_path, "show-ref") == f"{repo.second} refs/heads/main"
    fresh = tmp_path / "fresh-cache"
    with GitTree(url, repo.first[:10], "desired-state", cache_dir=fresh, env={}) as tree:
        assert str(tree.revision) == f"sha1:{repo.first}"  # no tip: fetched in full
        assert files_of(tree) == repo.first_files
    shutil.rmtree(bare)  # a commit already in the cache needs no remote
    with GitTree(url, repo.first, cache_dir=fresh, env={}) as tree:
        assert tree.revision.sha == repo.first
    with pytest.raises(RepositoryNotFound):
        GitTree(url, "main", cache_dir=fresh, env={})


def test_remote_unknown_ref_names_the_advertised_ones(repo: DesiredRepo, tmp_path: Path) -> None:
    url = _bare_remote(repo, tmp_path).as_uri()
    with pytest.raises(RefNotFound) as caught:
        GitTree(url, "v2", cache_dir=tmp_path / "cache", env={})
    assert "v1" in caught.value.close
    assert url in caught.value.message


def test_unreachable_remote_names_host_and_port(tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {"PLEXICA_GIT_PASSWORD": "s3cret-pass", "PLEXICA_GIT_USERNAME": "robot"}
    with pytest.raises(RemoteUnreachable) as caught:
        GitTree(f"http://127.0.0.1:{port}/repo.git", "main", cache_dir=tmp_path, env=env)
    assert f"127.0.0.1:{port} (Connection refused)" in caught.value.message
    assert caught.value.transient
    assert "s3cret-pass" not in str(caught.value)


def test_a_port_that_looks_like_an_http_status_is_still_unreachable(tmp_path: Path) -> None:
    """dulwich's error names the address: a refused port 38401 or 14040 is no 401 or 404."""
    import socket

    for port in (38401, 14010, 24030, 34040, 40130, 44010, 54031, 61404):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue  # taken: try the next one
        break
    else:
        pytest.fail("none of the candidate ports is free")
    with pytest.raises(RemoteUnreachable) as caught:
        GitTree(f"http://127.0.0.1:{port}/repo.git", "main", cache_dir=tmp_path, env={})
    assert f"127.0.0.1:{port} (Connection refused)" in caught.value.message


@pytest.mark.skipif(shutil.which("ssh") is None, reason="no ssh client")
def test_unreachable_ssh_remote_is_typed(tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(RemoteUnreachable) as caught:
        GitTree(f"ssh://git@127.0.0.1:{port}/r.git", "main", cache_dir=tmp_path, env={})
    assert f"cannot reach the git server at 127.0.0.1:{port}" in caught.value.message
    assert "git@" not in caught.value.message  # user info is scrubbed from the URL


def test_a_password_in_the_url_is_refused_and_not_echoed(tmp_path: Path) -> None:
    with pytest.raises(CredentialsInUrl) as caught:
        GitTree("https://robot:hunter2@git.example.invalid/r.git", "main", cache_dir=tmp_path)
    assert "hunter2" not in str(caught.value)
    assert "PLEXICA_GIT_PASSWORD" in caught.value.hint
    assert scrub_url("https://robot:hunter2@h.invalid/r.git") == "https://h.invalid/r.git"
    assert scrub_url("git@github.com:org/repo.git") == "github.com:org/repo.git"
    assert not list(tmp_path.iterdir())  # nothing fetched, nothing cached


@pytest.mark.skipif(http_backend() is None, reason="git http-backend is not installed")
def test_https_style_remote_with_basic_auth_from_the_environment(
    repo: DesiredRepo, tmp_path: Path
) -> None:
    served = tmp_path / "served"
    served.mkdir()
    git(served, "clone", "-q", "--bare", str(repo.work), str(served / "platform.git"))
    secret = "pa55-word-from-env"
    with serve_git_http(served, "robot", secret) as server:
        url = f"{server.url}/platform.git"
        good = {"PLEXICA_GIT_USERNAME": "robot", "PLEXICA_GIT_PASSWORD": secret}
        with GitTree(url, "main", "desired-state", cache_dir=tmp_path / "c", env=good) as tree:
            assert str(tree.revision) == f"main@sha1:{repo.second}"
            assert files_of(tree) == repo.second_files
            mirror = tree.mirror_path
        assert mirror is not None
        assert (mirror / "shallow").read_text().split() == [repo.second]  # depth 1
        first_fetch = _objects_in(mirror)
        assert first_fetch < 50  # the tip's tree only, not the first commit's
        tenant = repo.work / "desired-state/tenants/acme.yaml"
        tenant.write_text(tenant.read_text() + "# edited\n")
        third = commit_all(repo.work, "acme edited")
        git(repo.work, "push", "-q", str(served / "platform.git"), "main")
        with GitTree(url, "main", cache_dir=tmp_path / "c", env=good) as tree:
            assert tree.revision.sha == third
        assert _objects_in(mirror) - first_fetch == 5  # incremental over HTTP too
        token = {"PLEXICA_GIT_USERNAME": "robot", "PLEXICA_GIT_TOKEN": secret}
        with GitTree(url, "v1", cache_dir=tmp_path / "c", env=token) as tree:
            assert tree.revision.sha == repo.first
        wrong = {"PLEXICA_GIT_USERNAME": "robot", "PLEXICA_GIT_PASSWORD": "wrong-" + secret}
        for env in (wrong, {}):
            with pytest.raises(AuthenticationFailed) as caught:
                GitTree(url, "main", cache_dir=tmp_path / "c2", env=env)
            shown = f"{caught.value}\n{caught.value!r}"
            assert secret not in shown and "wrong-" not in shown
            assert "PLEXICA_GIT_PASSWORD" in caught.value.hint
        with pytest.raises(RepositoryNotFound):
            GitTree(f"{server.url}/nothing.git", "main", cache_dir=tmp_path / "c3", env=good)
        assert any(line.endswith("-> 401") for line in server.requests)


# --------------------------------------------------------------------------- directories


def test_directory_content_hash_is_the_revision_desired_py_records(tmp_path: Path) -> None:
    root = tmp_path / "plain"
    shutil.copytree(Path(__file__).resolve().parents[2] / "desired-state", root)
    built = build_desired_state(root).desired
    tree = DirectoryTree(root)
    assert content_hash(tree, built.files) == built.revision
    revision = tree.revision_of(built.files)
    assert revision == DirectoryRevision(built.revision, None, None)  # not in a work tree
    assert revision.describe() == built.revision == str(revision)


def test_directory_in_a_work_tree_says_whether_it_is_dirty(repo: DesiredRepo) -> None:
    root = repo.work / "desired-state"
    tree = DirectoryTree(root)
    files = [e.path for e in tree.walk() if e.kind is EntryKind.FILE]

    def state() -> tuple[GitRevision | None, bool | None]:
        revision = tree.revision_of(files)
        return revision.work_tree, revision.dirty

    head = GitRevision(repo.second, "main")
    assert state() == (head, False)
    described = tree.revision_of(files).describe()
    assert described.endswith(f"(inside git work tree: main@sha1:{repo.second}, clean)")

    acme = root / "tenants/acme.yaml"
    original = acme.read_bytes()
    acme.write_bytes(original.replace(b"acme", b"acne", 1))  # same size, other bytes
    assert state() == (head, True)
    assert tree.revision_of(files).describe().endswith(", dirty)")
    git(repo.work, "add", "-A")
    assert state() == (head, True)  # staged is not committed
    acme.write_bytes(original)
    git(repo.work, "add", "-A")
    assert state() == (head, False)

    (root / ".notes").write_text("hidden: the loader skips it\n")
    (repo.work / "elsewhere.txt").write_text("outside the directory\n")
    assert state() == (head, False)
    (root / "tenants/new.yaml").write_text("kind: Tenant\n")  # untracked counts
    assert state() == (head, True)
    (repo.work / ".gitignore").write_text("desired-state/tenants/new.yaml\n")
    assert state() == (head, True)  # ignored too: the loader reads it
    (root / "tenants/new.yaml").unlink()
    (root / "tenants/globex.yaml").unlink()  # deleted counts
    assert state() == (head, True)
    git(repo.work, "checkout", "-q", "--", "desired-state")
    os.utime(root / "tenants/globex.yaml", (0, 0))  # stat differs: hashed, same bytes
    assert state() == (head, False)


def test_directory_in_a_work_tree_without_commits(tmp_path: Path) -> None:
    work = init(tmp_path / "empty")
    (work / "platform.yaml").write_text("kind: Platform\n")
    revision = DirectoryTree(work).revision_of(["platform.yaml"])
    assert (revision.work_tree, revision.dirty) == (None, True)
    assert revision.describe().endswith("(inside git work tree: no commit yet, dirty)")


def test_directory_read_never_opens_a_fifo(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.yaml")
    (tmp_path / "tenants").mkdir()
    tree = DirectoryTree(tmp_path)
    assert {e.path: e.kind for e in tree.walk()} == {
        "pipe.yaml": EntryKind.OTHER,
        "tenants": EntryKind.DIRECTORY,
    }
    outcome: list[BaseException] = []

    def read() -> None:
        try:
            tree.read("pipe.yaml", LIMIT)
        except BaseException as exc:
            outcome.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=5)
    assert not reader.is_alive(), "read() blocked on a FIFO"
    assert isinstance(outcome[0], NotARegularFile) and outcome[0].kind is EntryKind.OTHER


@pytest.mark.skipif(os.geteuid() == 0, reason="root lists any directory")
def test_directory_walk_marks_a_directory_it_cannot_list(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "x.yaml").write_text("a: 1\n")
    locked.chmod(0)
    try:
        entries = DirectoryTree(tmp_path).walk()
    finally:
        locked.chmod(stat.S_IRWXU)
    assert entries == [Entry("locked", EntryKind.DIRECTORY, error="Permission denied")]


# --------------------------------------------------------------------------- the loader's walk


def _loader_view(root: Path) -> tuple[list[str], list[str]]:
    """What today's loader walk finds: YAML files, and the links it refuses (PGL007)."""
    found, findings = loader._walk(root, os.path.realpath(root))
    escapes = [f.location.file for f in findings if f.code == loader.SYMLINK_ESCAPE and f.location]
    return [rel for rel, _ in found], sorted(escapes)


def _followed_view(tree: SourceTree) -> tuple[list[str], list[str]]:
    walked = walk_followed(tree, loader._is_yaml_name)
    return [r.path for r in walked.files], sorted(e.path for e in walked.escapes)


def test_the_followed_walk_finds_what_the_loader_finds_today(tmp_path: Path) -> None:
    work, sha = _link_repo(tmp_path)
    root = work / "desired-state"
    (root / "ext").symlink_to("..")  # a directory outside the root: refused, any name
    (root / "etc").symlink_to("/etc")
    (root / "notes.txt").symlink_to("../README.md")  # a file outside, not YAML: not looked at
    (root / "tenants/dir.yaml").symlink_to("../plugins/crm")  # a directory named .yaml
    sha = commit_all(work, "more links")
    checkout = clone_at(work, tmp_path / "checkout", sha)
    files, escapes = _loader_view(checkout / "desired-state")
    assert "more/acme.yaml" in files and "tenants/acme.yaml" not in files  # first name wins
    assert "ext" in escapes and "notes.txt" not in escapes
    assert "vendor/x.yaml" in files  # today the loader reads into a nested repository
    with (
        DirectoryTree(checkout / "desired-state") as on_disk,
        GitTree(work, sha, "desired-state") as in_git,
    ):
        for tree in (on_disk, in_git):
            walked = walk_followed(tree, loader._is_yaml_name)
            assert _followed_view(tree) == (
                [f for f in files if not f.startswith("vendor/")],
                escapes,
            ), tree
            assert walked.submodules == [Entry("vendor", EntryKind.SUBMODULE)]
            reached = {r.path: r.target for r in walked.files}
            assert reached["more/alias.yaml"] == tree.entry("tenants/acme.yaml")
            loop = reached["more/loop-a.yaml"]
            assert isinstance(loop, LinkProblem) and loop.kind is LinkProblemKind.LOOP


def test_the_followed_walk_of_the_example_is_the_loaders(repo: DesiredRepo) -> None:
    root = repo.work / "desired-state"
    with DirectoryTree(root) as on_disk, GitTree(repo.work, "main", "desired-state") as in_git:
        assert _followed_view(on_disk) == _loader_view(root) == _followed_view(in_git)


# --------------------------------------------------------------------------- validating a commit


def _findings(report: ValidationReport) -> set[tuple[str, str | None, int | None]]:
    return {
        (f.code, f.location.file if f.location else None, f.location.line if f.location else None)
        for f in report.findings
    }


def test_validating_a_commit_finds_what_validating_its_checkout_finds(tmp_path: Path) -> None:
    work, sha = _link_repo(tmp_path)
    crm = work / "desired-state/plugins/crm"
    (crm / "migrations/0009_outside.sql").symlink_to("../../../../README.md")
    (crm / "migrations/0010_notes.sql").symlink_to("0001_create_crm_pipelines_and_deals.sql")
    sha = commit_all(work, "migrations through links")
    checkout = clone_at(work, tmp_path / "checkout", sha)
    on_disk = validate_directory(checkout / "desired-state")
    with GitTree(work, sha, "desired-state") as tree:
        in_git = validate_directory(tree)
    assert in_git.desired.revision == f"sha1:{sha}"
    assert on_disk.desired.work_tree_dirty is False  # a clean checkout of that commit
    assert ("PGV801", "plugins/crm/migrations/0009_outside.sql", None) in _findings(in_git)
    # the submodule: the checkout's files are read as the loader always read them, the
    # commit refuses it (its files are no part of the commit)
    assert _findings(in_git) - _findings(on_disk) == {("PGL007", "vendor", None)}
    # A migration symlinked inside the root: the commit follows it as it follows a
    # manifestFile; a directory keeps its old reading, which opens the link itself
    # without following it (O_NOFOLLOW) and so reports it unreadable (PGL008).
    notes = "plugins/crm/migrations/0010_notes.sql"
    assert {file for _, file, _ in _findings(on_disk) - _findings(in_git)} == {
        "vendor/x.yaml",
        notes,
    }
    assert ("PGL008", notes, None) in _findings(on_disk)
    crm_git, crm_disk = in_git.desired.plugins["crm"], on_disk.desired.plugins["crm"]
    assert crm_git.migrations[:-1] == crm_disk.migrations
    assert crm_git.migrations[-1].path == notes
    assert crm_git.migrations[-1].sql == crm_git.migrations[0].sql
