"""Tiny plugin images for the tests and the demo, built locally (no registry is reachable).

An image is `FROM scratch` with Debian's static busybox serving static files with `busybox
httpd` on port 8080:

    /index.html, /api/plugins/<id>/index.html    {"plugin": "<id>", "version": "<version>"}
    /health/, /health/live, /health/ready        "ok" (`/health` answers 301 to `/health/`)

`behaviour="never-ready"` leaves `/health/ready` out, so readiness answers 404 for ever
while liveness stays fine. A `startup_delay` (seconds; also the container env
`PLEXICA_STARTUP_DELAY`) holds httpd back, so a replica is not ready straight away.

Builds are cached: the content (busybox, files, entrypoint) is hashed into a label, and an
existing tag with the same label is reused (a build takes about 0.6 s, a hit a few ms).

From the shell, on the engine at DOCKER_HOST (default: the demo's own):

    python -m devenv.images build                                  # every desired-state image
    python -m devenv.images build --plugin crm --version 1.3.0     # crm's image, tag 1.3.0
    python -m devenv.images build --plugin crm --version 1.3.1 --behaviour never-ready
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
from pathlib import Path
from typing import Any

BUSYBOX = Path("/bin/busybox")
PORT = 8080
CONTENT_LABEL = "io.plexica.devenv.content"
BEHAVIOURS = ("healthy", "never-ready")


def build_plugin_image(
    client: Any,
    image_ref: str,
    plugin_id: str,
    version: str,
    *,
    behaviour: str = "healthy",
    startup_delay: float = 0,
) -> str:
    """Build (or reuse) the plugin image and tag it `image_ref`; returns `image_ref`.
    `client` is a `docker.DockerClient`."""
    if behaviour not in BEHAVIOURS:
        raise ValueError(f"behaviour must be one of {BEHAVIOURS}, not {behaviour!r}")
    files = _site(plugin_id, version, behaviour)
    dockerfile = _dockerfile(startup_delay)
    busybox = _busybox()
    content = _content_hash(dockerfile, files, busybox)
    if _cached(client, image_ref, content):
        return image_ref
    dockerfile += f'LABEL {CONTENT_LABEL}="{content}"\n'
    context = _context(dockerfile, files, busybox)
    client.images.build(fileobj=context, custom_context=True, tag=image_ref, rm=True)
    return image_ref


def build_desired_state_images(client: Any, desired_dir: Path) -> list[str]:
    """Build the image (`manifest.runtime.image`) of every plugin of a desired-state
    directory, each answering with its plugin id and manifest version."""
    from plexica_gitops.desired.build import build_desired_state

    desired = build_desired_state(desired_dir).desired
    built = []
    for pid in sorted(desired.plugins):
        manifest = desired.plugins[pid].manifest
        built.append(build_plugin_image(client, manifest.runtime.image, pid, manifest.version))
    return built


def _site(plugin_id: str, version: str, behaviour: str) -> dict[str, bytes]:
    answer = (json.dumps({"plugin": plugin_id, "version": version}) + "\n").encode()
    files = {
        "index.html": answer,
        f"api/plugins/{plugin_id}/index.html": answer,
        "health/index.html": b"ok\n",
        "health/live": b"ok\n",
    }
    if behaviour != "never-ready":
        files["health/ready"] = b"ok\n"
    return files


def _dockerfile(startup_delay: float) -> str:
    # `sh -c` so the delay can be applied before httpd starts; `exec` makes httpd the child
    # of the container's init, so a SIGTERM reaches it and stop is quick. Applets are
    # called through /bin/busybox: the image has no /bin/sleep or /bin/sh.
    script = (
        f"/bin/busybox sleep ${{PLEXICA_STARTUP_DELAY:-{startup_delay:g}}}; "
        f"exec /bin/busybox httpd -f -p {PORT} -h /www"
    )
    entrypoint = json.dumps(["/bin/busybox", "sh", "-c", script])
    return (
        "FROM scratch\n"
        "COPY busybox /bin/busybox\n"
        "COPY www /www\n"
        "USER 65534:65534\n"
        f"EXPOSE {PORT}\n"
        f"ENTRYPOINT {entrypoint}\n"
    )


def _busybox() -> bytes:
    if not BUSYBOX.exists():
        _install_busybox()
    return BUSYBOX.read_bytes()


def _install_busybox() -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "busybox-static"], check=True, env=env)


def _content_hash(dockerfile: str, files: dict[str, bytes], busybox: bytes) -> str:
    digest = hashlib.sha256(dockerfile.encode())
    digest.update(hashlib.sha256(busybox).digest())
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + files[name] + b"\0")
    return digest.hexdigest()[:32]


def _cached(client: Any, image_ref: str, content: str) -> bool:
    import docker.errors

    try:
        image = client.images.get(image_ref)
    except docker.errors.ImageNotFound:
        return False
    labels = (image.attrs.get("Config") or {}).get("Labels") or {}
    return bool(labels.get(CONTENT_LABEL) == content)


def _context(dockerfile: str, files: dict[str, bytes], busybox: bytes) -> io.BytesIO:
    """The build context as an in-memory tar. Modes are explicit: the container runs as
    uid 65534 on a read-only root, so everything must be world-readable."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        _add(tar, "Dockerfile", dockerfile.encode(), 0o644)
        _add(tar, "busybox", busybox, 0o755)
        directories = {"www"}
        for name in files:
            parts = f"www/{name}".split("/")[:-1]
            directories.update("/".join(parts[: i + 1]) for i in range(len(parts)))
        for directory in sorted(directories):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for name in sorted(files):
            _add(tar, f"www/{name}", files[name], 0o644)
    buffer.seek(0)
    return buffer


def _add(tar: tarfile.TarFile, name: str, data: bytes, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    tar.addfile(info, io.BytesIO(data))


# --- python -m devenv.images build ----------------------------------------------------------


def image_for_version(image_ref: str, version: str) -> str:
    """`image_ref` with its tag replaced by `version` (the validator wants tag = version)."""
    name, _, tag = image_ref.rpartition(":")
    if not name or "/" in tag:  # no tag (the colon, if any, was a registry's port)
        name = image_ref
    return f"{name}:{version}"


def _docker_host() -> str:
    """DOCKER_HOST, else the demo's own engine (the socket `python -m devenv.demo` starts)."""
    if os.environ.get("DOCKER_HOST"):
        return os.environ["DOCKER_HOST"]
    demo = Path(os.environ.get("PLEXICA_DEMO_DIR", "/var/tmp/plexica-demo"))
    return f"unix://{(demo / 'podman' / 'podman.sock').resolve()}"


def build_command(args: Any) -> list[str]:
    """Build what `args` asks for (see `main`); returns the image references built."""
    import docker
    import semver

    from plexica_gitops.desired.build import build_desired_state

    client = docker.DockerClient(base_url=_docker_host())
    try:
        if args.plugin is None:
            return build_desired_state_images(client, args.desired_state)
        plugins = build_desired_state(args.desired_state).desired.plugins
        if args.plugin not in plugins:
            known = ", ".join(sorted(plugins))
            raise SystemExit(f"images: no plugin {args.plugin!r} in {args.desired_state} ({known})")
        manifest = plugins[args.plugin].manifest
        version = args.version or manifest.version
        if not semver.Version.is_valid(version):
            raise SystemExit(f"images: --version {version!r} is not a semantic version")
        image_ref = image_for_version(manifest.runtime.image, version)
        behaviour, delay = args.behaviour, args.startup_delay
        built = build_plugin_image(
            client, image_ref, args.plugin, version, behaviour=behaviour, startup_delay=delay
        )
        return [built]
    finally:
        client.close()


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m devenv.images",
        description="Build the busybox plugin images locally (no registry is reachable).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser(
        "build",
        help="every plugin image of the desired state, or one plugin's at a new version",
        description="Without --plugin: the image of every plugin of the desired state. With "
        "--plugin (and --version): that plugin's image, tagged with the version, answering "
        "with it; then set the version and the image tag in its plugin.yaml and plan.",
    )
    build.add_argument("--desired-state", type=Path, default=Path("desired-state"))
    build.add_argument("--plugin", help="plugin id, e.g. crm")
    build.add_argument("--version", help="version to build, e.g. 1.3.0 (default: the manifest's)")
    build.add_argument(
        "--behaviour", choices=BEHAVIOURS, default="healthy",
        help="never-ready: readiness never answers, so an update to it is rolled back",
    )  # fmt: skip
    build.add_argument("--startup-delay", type=float, default=0, help="seconds before serving")
    args = parser.parse_args(argv)
    if args.version and not args.plugin:
        parser.error("--version needs --plugin")
    import docker.errors

    try:
        built = build_command(args)
    except docker.errors.DockerException as error:
        message = " ".join(str(error).split())
        raise SystemExit(
            f"images: the engine at {_docker_host()} did not build: {message} (set DOCKER_HOST "
            "to a Docker-API engine; the demo prints its own)"
        ) from None
    for image in built:
        print(image)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
