"""A real Kubernetes control plane for the tests, the benchmarks and the demo.

Built from Go modules on this machine (ENVIRONMENT.md, issue 13). `devenv/kube/go.mod` is a
small Go tools module requiring `k8s.io/kubernetes` at one pinned release, with `replace`
lines mapping its staging modules (`k8s.io/api`, `k8s.io/client-go`, ...) to the matching
`v0.X` releases, the usual way to build Kubernetes outside its repository; inside it, `go
build` gives the real kube-apiserver, kube-controller-manager and kube-scheduler, and the
real etcd (`go.etcd.io/etcd/server/v3`, at the version Kubernetes itself requires) and kwok
(`sigs.k8s.io/kwok`), the node and pod simulator Kubernetes' own scale tests use. (kwok is
built against this release's client libraries; its requirements only add modules, none of
the versions the Kubernetes binaries are built with changes: checked when it was added.)

`build()` builds them once into a cache directory keyed by those versions
(`$PLEXICA_KUBE_CACHE`, default `~/.cache/plexica-gitops/kube`); later calls find them. A
second builder waits on a lock, and a build goes to a temporary directory renamed into
place, so an interrupted or concurrent build never leaves a half-filled cache. The build
log is kept in the cache directory; a failure names it.

`KubeCluster` starts etcd, kube-apiserver, kube-controller-manager, kube-scheduler and
kwok, each in its own process group with its own log file, on free loopback ports, with a
CA, serving certificate, service-account key and admin token generated per cluster
(authorization Node,RBAC; the admin token's user is in `system:masters`), registers one
simulated Node, waits until the cluster can run a pod, and writes a kubeconfig. Nothing
runs containers: kwok gives pods a life by the rules of `devenv/kube/kwok-stages.yaml`
(see `POD_BEHAVIOURS`), and the real scheduler, Deployment and ReplicaSet controllers do
the rest: binding, rolling updates, maxSurge/maxUnavailable, observedGeneration,
ProgressDeadlineExceeded.

    python -m devenv.kube build     # build the binaries, or find them cached
    python -m devenv.kube start     # start a cluster that outlives the command and
                                    # print its kubeconfig path
    python -m devenv.kube status    # whether it answers
    python -m devenv.kube stop      # stop it (its data is kept; --purge removes it)
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import datetime
import fcntl
import hashlib
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

KUBERNETES_VERSION = "1.37.2"
ETCD_VERSION = "3.7.0"  # what k8s.io/kubernetes v1.37.2 requires (go.etcd.io/etcd/*/v3)
KWOK_VERSION = "0.8.0"

MODULE_DIR = Path(__file__).resolve().parent / "kube"
STAGES_TEMPLATE = MODULE_DIR / "kwok-stages.yaml"
CACHE_ENV = "PLEXICA_KUBE_CACHE"
STATE_ENV = "PLEXICA_KUBE_STATE"
DEFAULT_STATE_DIR = Path("/var/tmp/plexica-kube")

SERVICE_CIDR = "10.96.0.0/16"  # service ClusterIPs: allocated, never routed anywhere
POD_CIDR = "10.244.0.0/16"  # the pod IPs kwok writes into pod status: never routed either
NODE_NAME = "kwok-node-0"
NODE_ANNOTATION = "kwok.x-k8s.io/node"  # kwok manages the nodes carrying it (= "fake")

# How kwok gives a pod its life (kwok-stages.yaml): the annotation `BEHAVIOUR_ANNOTATION`
# on the pod (its template) decides when present; otherwise the first marker found as a
# substring of any container's image reference, in this order; otherwise "ready".
BEHAVIOUR_ANNOTATION = "sim.plexica.io/behaviour"
DELAY_ANNOTATION = "sim.plexica.io/ready-delay"  # e.g. "3s": this pod's own delay
POD_BEHAVIOURS: Mapping[str, str] = {
    "never-ready": "Running, containers running, but Ready and ContainersReady False "
    "(and a Warning Unhealthy event, as a failing readiness probe gives)",
    "crashloop": "Running, containers waiting in CrashLoopBackOff, restartCount rising every "
    "10 s (Warning BackOff event)",
    "pull-fail": "Pending, containers waiting in ImagePullBackOff (Warning Failed event)",
}


def behaviour_query() -> str:
    """The jq query kwok's stages select a pod's behaviour with (see POD_BEHAVIOURS)."""
    chain = " elif ".join(f'any(contains("{marker}")) then "{marker}"' for marker in POD_BEHAVIOURS)
    images = f'[.spec.containers[].image] | if {chain} else "ready" end'
    return f'.metadata.annotations["{BEHAVIOUR_ANNOTATION}"] // ({images})'


_GO_TAGS = "selinux,notest,grpcnotrace"  # what Kubernetes' own release build uses


class KubeError(RuntimeError):
    """A component could not be built or started. The message is one line, in the form of
    devenv's other servers: what, why (the log's last line), where the log is."""

    def __init__(self, what: str, cause: str, log: Path | None = None) -> None:
        self.log = log
        where = f" (log: {log})" if log is not None else ""
        super().__init__(f"{what}: {cause}{where}")


def _last_line(log: Path, *, skip_comments: bool = False) -> str:
    """The log's last non-empty line (without our own `#` notes), shortened."""
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return "no log"
    for line in reversed(lines):
        line = line.strip()
        if line and not (skip_comments and line.startswith("#")):
            return line if len(line) <= 300 else line[:297] + "..."
    return "no output"


# --- build ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    binary: str
    package: str


TARGETS = (
    _Target("kube-apiserver", "k8s.io/kubernetes/cmd/kube-apiserver"),
    _Target("kube-controller-manager", "k8s.io/kubernetes/cmd/kube-controller-manager"),
    _Target("kube-scheduler", "k8s.io/kubernetes/cmd/kube-scheduler"),
    _Target("etcd", "go.etcd.io/etcd/server/v3"),
    _Target("kwok", "sigs.k8s.io/kwok/cmd/kwok"),
)


def cache_root() -> Path:
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured).expanduser().resolve()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "plexica-gitops" / "kube"


def cache_key() -> str:
    """The versions, and a digest of the module's go.mod/go.sum and the build flags (a
    changed pin or flag builds anew instead of reusing binaries built otherwise)."""
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum"):
        digest.update((MODULE_DIR / name).read_bytes())
    digest.update(_GO_TAGS.encode())
    for target in TARGETS:
        digest.update(f"{target.binary}={target.package} {_ldflags(target)}".encode())
    versions = f"kubernetes-{KUBERNETES_VERSION}_etcd-{ETCD_VERSION}_kwok-{KWOK_VERSION}"
    return f"{versions}_{digest.hexdigest()[:10]}"


def bin_dir() -> Path:
    """Where `build()` puts the binaries (they may not be there yet)."""
    return cache_root() / cache_key()


def built() -> bool:
    directory = bin_dir()
    return all(os.access(directory / target.binary, os.X_OK) for target in TARGETS)


def go_binary() -> str:
    configured = os.environ.get("PLEXICA_GO")
    if configured:
        if not os.access(configured, os.X_OK):
            raise KubeError("the Go toolchain", f"$PLEXICA_GO={configured} is not executable")
        return configured
    found = shutil.which("go")
    if found:
        return found
    if Path("/usr/local/go/bin/go").exists():
        return "/usr/local/go/bin/go"
    raise KubeError("the Go toolchain", "not found (PATH, /usr/local/go/bin/go, $PLEXICA_GO)")


def _ldflags(target: _Target) -> str:
    flags = ["-s", "-w"]
    if target.package.startswith("k8s.io/kubernetes/"):
        # What hack/lib/version.sh stamps: without it /version says v0.0.0-master.
        major, minor, _ = KUBERNETES_VERSION.split(".")
        for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
            for key, value in (
                ("gitVersion", f"v{KUBERNETES_VERSION}"),
                ("gitMajor", major),
                ("gitMinor", minor),
                ("gitTreeState", "clean"),
            ):
                flags.append(f"-X {package}.{key}={value}")
    if target.binary == "kwok":
        flags.append(f"-X sigs.k8s.io/kwok/pkg/consts.Version=v{KWOK_VERSION}")
    return " ".join(flags)


def build(*, quiet: bool = False) -> Path:
    """The directory holding the binaries, building them first unless they are cached."""
    return _build(quiet=quiet)[0]


def _build(*, quiet: bool) -> tuple[Path, bool]:
    """(the binaries' directory, whether this call built them)."""
    if built():
        return bin_dir(), False
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    log_path = root / f"{cache_key()}.build.log"
    with (root / f"{cache_key()}.lock").open("w") as lock:
        if not quiet:
            print(f"building the Kubernetes binaries into {bin_dir()}", file=sys.stderr)
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second builder waits here, then finds it built
        if built():
            return bin_dir(), False
        for stale in root.glob(f".{cache_key()}.*"):  # left by a build that was killed
            shutil.rmtree(stale, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{cache_key()}.", dir=root))
        try:
            _build_into(staging, log_path, quiet=quiet)
            staging.chmod(0o755)
            final = bin_dir()
            shutil.rmtree(final, ignore_errors=True)  # incomplete: built() said so
            staging.rename(final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return bin_dir(), True


def _build_into(directory: Path, log_path: Path, *, quiet: bool) -> None:
    go = go_binary()
    env = {
        **os.environ,
        "CGO_ENABLED": "0",
        "GOTOOLCHAIN": "local",  # never download another toolchain
        "GOWORK": "off",
        "GOFLAGS": "-mod=readonly -buildvcs=false",
    }
    started = time.monotonic()
    with log_path.open("w", encoding="utf-8") as log:
        log.write(f"# {cache_key()} built with {_go_version(go)} into {directory}\n")
        log.flush()
        for target in TARGETS:
            command = [
                go, "build", "-trimpath", "-tags", _GO_TAGS,
                "-ldflags", _ldflags(target),
                "-o", str(directory / target.binary), target.package,
            ]  # fmt: skip
            if not quiet:
                print(f"building {target.binary} ({target.package}) ...", file=sys.stderr)
            log.write(f"\n# $ (cd {MODULE_DIR} && {' '.join(command)})\n")
            log.flush()
            begun = time.monotonic()
            result = subprocess.run(
                command, cwd=MODULE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT
            )
            log.write(f"# {target.binary}: exit {result.returncode}, {_since(begun)}\n")
            log.flush()
            if result.returncode != 0:
                log.flush()
                cause = _last_line(log_path, skip_comments=True)
                raise KubeError(f"go build of {target.binary} failed", cause, log_path)
        log.write(f"\n# all built in {_since(started)}\n")
    (directory / "BUILD-INFO").write_text(
        f"{cache_key()}\n{_go_version(go)}\ntags {_GO_TAGS}\n", encoding="utf-8"
    )


def _go_version(go: str) -> str:
    result = subprocess.run([go, "version"], capture_output=True, text=True, check=False)
    return result.stdout.strip() or result.stderr.strip()


def _since(begun: float) -> str:
    return f"{time.monotonic() - begun:.1f} s"


# --- certificates, keys, tokens ---------------------------------------------------------


def _write_pki(directory: Path) -> None:
    """A CA, the apiserver's serving certificate (127.0.0.1, localhost and the in-cluster
    names) and the service-account signing key, all ECDSA P-256."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "plexica-devenv-ca")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    service_ip = next(ipaddress.IPv4Network(SERVICE_CIDR).hosts())  # the `kubernetes` Service
    names: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
        x509.IPAddress(service_ip),
        x509.DNSName("localhost"),
        x509.DNSName("kubernetes"),
        x509.DNSName("kubernetes.default"),
        x509.DNSName("kubernetes.default.svc"),
        x509.DNSName("kubernetes.default.svc.cluster.local"),
    ]
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    sa_key = ec.generate_private_key(ec.SECP256R1())
    files = {
        "ca.crt": ca_cert.public_bytes(serialization.Encoding.PEM),
        "ca.key": pem_key(ca_key),
        "apiserver.crt": server_cert.public_bytes(serialization.Encoding.PEM),
        "apiserver.key": pem_key(server_key),
        "sa.key": pem_key(sa_key),
        "sa.pub": sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    }
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        path = directory / name
        path.write_bytes(data)
        path.chmod(0o600)


# --- processes --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) is not alive for us.
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z"):
            return False
    return True


def _runs_binary(pid: int, binary: Path) -> bool:
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
    except OSError:
        return False
    return argv0.decode(errors="replace") == str(binary)


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL when the process that started it dies, so a test
    run that is killed leaves no control plane behind. (Not SIGTERM: all components would
    get it at once, and an apiserver whose etcd has gone hangs in its graceful shutdown.)"""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


_PR_SET_PDEATHSIG = 1


def _stop_group(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM the process group led by `pid` (each component is started in its own
    session), SIGKILL it if it is still there after `timeout`."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


@dataclass
class _Component:
    name: str
    binary: Path
    args: list[str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    pid: int | None = None  # a component recorded by another process (the CLI's `stop`)
    outlive: bool = False  # keep running when the starting process dies (the CLI's cluster)

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(self.binary), *self.args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group
                preexec_fn=None if self.outlive else _die_with_parent,
            )
        self.pid = self.process.pid

    def exited(self) -> int | None:
        if self.process is not None:
            return self.process.poll()
        if self.pid is not None and not _alive(self.pid):
            return -1
        return None

    def stop(self) -> None:
        pid, self.pid = self.pid, None
        if pid is None:
            return
        if self.process is not None or _runs_binary(pid, self.binary):
            _stop_group(pid)
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=1)
        self.process = None


# --- the cluster ------------------------------------------------------------------------


class KubeCluster:
    """etcd + kube-apiserver + kube-controller-manager + kube-scheduler + kwok on loopback.

    `base_dir=None` makes a throwaway cluster in a temporary directory, removed by `stop()`.
    With a `base_dir`, its data, certificates and token are kept there and reused by the
    next `start()` (the CLI's and the demo's cluster); `stop(purge=True)` removes them.

    `ready_delay` is how long after a pod is bound kwok makes it Running (and Ready,
    following `POD_BEHAVIOURS`); a pod's annotation `sim.plexica.io/ready-delay` overrides it.
    """

    def __init__(
        self,
        base_dir: Path | None = None,
        *,
        ready_delay: float = 0.5,
        node_cpu: str = "32",
        node_memory: str = "128Gi",
        node_pods: int = 250,
    ) -> None:
        self.temporary = base_dir is None
        self.base = Path(tempfile.mkdtemp(prefix="plexica-kube-")) if base_dir is None else base_dir
        self.base = self.base.resolve()
        self.ready_delay = ready_delay
        self.node_capacity = {"cpu": node_cpu, "memory": node_memory, "pods": str(node_pods)}
        self.pki = self.base / "pki"
        self.logs = self.base / "logs"
        self.kubeconfig = self.base / "kubeconfig"
        self.token = ""
        self.apiserver_port = 0
        self.ports: dict[str, int] = {}
        self.components: list[_Component] = []
        self.timings: dict[str, float] = {}

    # -- public ----------------------------------------------------------------------------

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    @property
    def ca_file(self) -> Path:
        return self.pki / "ca.crt"

    def start(self, timeout: float = 90.0) -> None:
        """Start every component and wait until a pod could be scheduled and run: the
        apiserver ready, the simulated node Ready, the `default` service account made by
        the controller manager, the scheduler healthy. Builds first if nothing is cached
        (that takes many minutes: `.ci/run` builds beforehand)."""
        begun = time.monotonic()
        binaries = build()
        self.timings["build-check"] = time.monotonic() - begun
        self.base.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        self._prepare_credentials()
        ports = self._ports()
        self.ports = ports
        self.apiserver_port = ports["apiserver"]
        self._write_kubeconfig()
        self.components = self._components(binaries, ports)
        deadline = begun + timeout
        try:
            etcd, apiserver, *rest = self.components
            etcd.start()
            self._wait(etcd, deadline, lambda: self._etcd_healthy(ports["etcd"]))
            self.timings["etcd"] = time.monotonic() - begun
            apiserver.start()
            self._wait(apiserver, deadline, lambda: self._get_ok("/readyz"))
            self.timings["apiserver"] = time.monotonic() - begun
            for component in rest:
                component.start()
            try:
                self._register_node()
            except (OSError, ValueError) as exc:  # urllib's errors are OSErrors
                what = f"registering node {NODE_NAME}"
                raise KubeError(what, str(exc), apiserver.log_path) from exc
            self._wait_all(deadline)
            self.timings["ready"] = time.monotonic() - begun
            if not self.temporary:
                self._record_state()
        except BaseException:
            # Stopped, but the directory stays when start failed: the error names its logs.
            self.stop(purge=False)
            raise

    def stop(self, *, purge: bool | None = None) -> None:
        """Stop every component (reverse order); remove the directory when the cluster is
        temporary, or when `purge`."""
        for component in reversed(self.components):
            component.stop()
        self.components = []
        with contextlib.suppress(FileNotFoundError):
            (self.base / "state.json").unlink()
        if self.temporary if purge is None else purge:
            shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> KubeCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def env(self) -> dict[str, str]:
        """Environment for tools that read KUBECONFIG (kubectl, the kubernetes client)."""
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def request(
        self, method: str, path: str, body: Any = None, *, content_type: str | None = None
    ) -> Any:
        """One authenticated API request (JSON in and out): devenv's own few calls, so
        that this module needs no Kubernetes client library."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = content_type or "application/json"
        req = urllib.request.Request(self.server + path, data, headers, method=method)
        with urllib.request.urlopen(req, context=self._ssl(), timeout=10) as response:
            raw = response.read()
        return json.loads(raw) if raw else None

    # -- setup -----------------------------------------------------------------------------

    def _prepare_credentials(self) -> None:
        token_file = self.base / "tokens.csv"
        if not (self.pki / "sa.key").exists() or not token_file.exists():
            _write_pki(self.pki)
            token = secrets.token_urlsafe(32)
            # token,user,uid,"groups": the admin is in system:masters (RBAC lets it all).
            token_file.write_text(
                f'{token},plexica-admin,plexica-admin,"system:masters"\n', encoding="utf-8"
            )
            token_file.chmod(0o600)
        self.token = token_file.read_text(encoding="utf-8").split(",", 1)[0]

    def _ports(self) -> dict[str, int]:
        """Free loopback ports; a kept cluster reuses its previous ones while they are free
        (etcd remembers its peer URL in its data)."""
        names = ("etcd", "peer", "apiserver", "kcm", "sched")
        saved = self.base / "ports.json"
        if not self.temporary:
            with contextlib.suppress(OSError, ValueError, KeyError):
                previous = json.loads(saved.read_text(encoding="utf-8"))
                ports = {name: int(previous[name]) for name in names}
                if all(_port_free(port) for port in ports.values()):
                    return ports
        ports = {name: free_port() for name in names}
        saved.write_text(json.dumps(ports), encoding="utf-8")
        return ports

    def _write_kubeconfig(self) -> None:
        ca = base64.b64encode(self.ca_file.read_bytes()).decode()
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "plexica-devenv",
                    "cluster": {"server": self.server, "certificate-authority-data": ca},
                }
            ],
            "users": [{"name": "plexica-admin", "user": {"token": self.token}}],
            "contexts": [
                {
                    "name": "plexica-devenv",
                    "context": {
                        "cluster": "plexica-devenv",
                        "user": "plexica-admin",
                        "namespace": "default",
                    },
                }
            ],
            "current-context": "plexica-devenv",
        }
        self.kubeconfig.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        self.kubeconfig.chmod(0o600)

    def _write_stages(self) -> Path:
        template = STAGES_TEMPLATE.read_text(encoding="utf-8")
        text = template.replace("@READY_DELAY_MS@", str(int(self.ready_delay * 1000)))
        text = text.replace("@BEHAVIOUR@", behaviour_query())
        text = text.replace("@DELAY_ANNOTATION@", DELAY_ANNOTATION)
        path = self.base / "kwok-stages.yaml"
        path.write_text(text, encoding="utf-8")
        return path

    def _components(self, binaries: Path, ports: dict[str, int]) -> list[_Component]:
        etcd_url = f"http://127.0.0.1:{ports['etcd']}"
        peer_url = f"http://127.0.0.1:{ports['peer']}"
        kubeconfig = str(self.kubeconfig)
        pki = self.pki
        (self.base / "etcd").mkdir(exist_ok=True)
        etcd = [
            "--name=node0",
            f"--data-dir={self.base / 'etcd'}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=node0={peer_url}",
            "--unsafe-no-fsync",  # a test cluster: speed over durability
            "--auto-compaction-retention=1",
            "--log-level=warn",
        ]
        apiserver = [
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={ports['apiserver']}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--token-auth-file={self.base / 'tokens.csv'}",
            "--authorization-mode=Node,RBAC",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            # The `kubernetes` Service's endpoints would be 127.0.0.1, which Endpoints
            # validation refuses (loopback): do not reconcile them.
            "--endpoint-reconciler-type=none",
            f"--cert-dir={self.base / 'apiserver'}",
            "--profiling=false",
        ]
        common = [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            "--leader-elect=false",
            "--profiling=false",
            # client-side rate limits (20 and 50 QPS by default) would pace a benchmark's
            # rollouts of 20 Deployments more than the controllers themselves do
            "--kube-api-qps=500",
            "--kube-api-burst=1000",
        ]
        controller_manager = [
            *common,
            f"--secure-port={ports['kcm']}",
            f"--cert-dir={self.base / 'controller-manager'}",
            "--controllers=*",
            "--use-service-account-credentials=false",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            "--cluster-name=plexica-devenv",
        ]
        scheduler = [
            *common,
            f"--secure-port={ports['sched']}",
            f"--cert-dir={self.base / 'scheduler'}",
        ]
        kwok = [
            f"--kubeconfig={kubeconfig}",
            f"--config={self._write_stages()}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={NODE_ANNOTATION}=fake",
            f"--cidr={POD_CIDR}",
            "--node-ip=127.0.0.1",
            "--node-lease-duration-seconds=40",
        ]
        return [
            self._component("etcd", binaries, etcd),
            self._component("kube-apiserver", binaries, apiserver),
            self._component("kube-controller-manager", binaries, controller_manager),
            self._component("kube-scheduler", binaries, scheduler),
            self._component("kwok", binaries, kwok),
        ]

    def _component(self, name: str, binaries: Path, args: list[str]) -> _Component:
        log = self.logs / f"{name}.log"
        return _Component(name, binaries / name, args, log, outlive=not self.temporary)

    def _register_node(self) -> None:
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": NODE_NAME,
                "annotations": {NODE_ANNOTATION: "fake"},
                "labels": {
                    "kubernetes.io/hostname": NODE_NAME,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "type": "kwok",
                },
            },
        }
        try:
            self.request("POST", "/api/v1/nodes", node)
        except urllib.error.HTTPError as exc:
            if exc.code != 409:  # a kept cluster has it already
                raise
        # kwok's node-initialize stage copies capacity/allocatable it finds in the status.
        status = {"status": {"capacity": self.node_capacity, "allocatable": self.node_capacity}}
        self.request(
            "PATCH",
            f"/api/v1/nodes/{NODE_NAME}/status",
            status,
            content_type="application/strategic-merge-patch+json",
        )

    # -- waiting ---------------------------------------------------------------------------

    def _ssl(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def _get_ok(self, path: str, port: int | None = None, *, verify: bool = True) -> bool:
        url = f"https://127.0.0.1:{port or self.apiserver_port}{path}"
        headers = {"Authorization": f"Bearer {self.token}"} if port is None else {}
        context = self._ssl() if verify else ssl._create_unverified_context()
        try:
            req = urllib.request.Request(url, headers=headers)
            with urllib.request.urlopen(req, context=context, timeout=2) as response:
                return bool(response.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    @staticmethod
    def _etcd_healthy(port: int) -> bool:
        try:
            url = f"http://127.0.0.1:{port}/health"
            with urllib.request.urlopen(url, timeout=2) as response:
                return bool(json.loads(response.read()).get("health") == "true")
        except (OSError, ValueError, urllib.error.URLError):
            return False

    def _node_ready(self) -> bool:
        try:
            node = self.request("GET", f"/api/v1/nodes/{NODE_NAME}")
        except (OSError, urllib.error.URLError):
            return False
        conditions = node.get("status", {}).get("conditions") or []
        return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)

    def _default_service_account(self) -> bool:
        try:
            self.request("GET", "/api/v1/namespaces/default/serviceaccounts/default")
        except (OSError, urllib.error.URLError):
            return False
        return True

    def _wait_all(self, deadline: float) -> None:
        by_name = {component.name: component for component in self.components}
        # Their serving certificates are self-signed per start: not verified.
        kcm_port, sched_port = self.ports["kcm"], self.ports["sched"]
        checks = [
            (by_name["kwok"], self._node_ready),
            (by_name["kube-controller-manager"], self._default_service_account),
            (
                by_name["kube-controller-manager"],
                lambda: self._get_ok("/healthz", kcm_port, verify=False),
            ),
            (
                by_name["kube-scheduler"],
                lambda: self._get_ok("/healthz", sched_port, verify=False),
            ),
        ]
        for component, check in checks:
            self._wait(component, deadline, check)

    def _wait(self, component: _Component, deadline: float, check: Any) -> None:
        while True:
            for each in self.components:
                status = each.exited()
                if status is not None:
                    cause = f"exited with status {status}: {_last_line(each.log_path)}"
                    raise KubeError(f"{each.name} did not start", cause, each.log_path)
            if check():
                return
            if time.monotonic() > deadline:
                cause = f"not ready in time: {_last_line(component.log_path)}"
                raise KubeError(f"{component.name} did not start", cause, component.log_path)
            time.sleep(0.05)

    # -- a cluster kept between commands (the CLI, the demo) --------------------------------

    def _record_state(self) -> None:
        state = {
            "server": self.server,
            "kubeconfig": str(self.kubeconfig),
            "components": {
                c.name: {"pid": c.pid, "binary": str(c.binary)} for c in self.components
            },
        }
        (self.base / "state.json").write_text(json.dumps(state, indent=2), encoding="utf-8")

    @classmethod
    def recorded(cls, base_dir: Path) -> KubeCluster | None:
        """The cluster a `start()` in another process recorded in `base_dir`, with its
        components (only those still running the recorded binary), or None."""
        try:
            state = json.loads((base_dir / "state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        cluster = cls(base_dir)
        cluster.apiserver_port = int(state["server"].rsplit(":", 1)[1])
        cluster.token = (base_dir / "tokens.csv").read_text(encoding="utf-8").split(",", 1)[0]
        for name, recorded in state["components"].items():
            pid, binary = int(recorded["pid"]), Path(recorded["binary"])
            component = _Component(name, binary, [], cluster.logs / f"{name}.log")
            component.pid = pid if _runs_binary(pid, binary) else None
            cluster.components.append(component)
        return cluster

    def answers(self) -> bool:
        """The apiserver is ready and every recorded component still runs."""
        running = all(c.pid is not None and c.exited() is None for c in self.components)
        return running and self._get_ok("/readyz")


@contextlib.contextmanager
def running_cluster(**options: Any) -> Iterator[KubeCluster]:
    """A throwaway cluster for the length of a `with` block."""
    cluster = KubeCluster(**options)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


# --- command line -----------------------------------------------------------------------


def _state_dir(value: str | None) -> Path:
    return Path(value or os.environ.get(STATE_ENV) or DEFAULT_STATE_DIR).resolve()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devenv.kube", description=__doc__.split("\n\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("build", help="build the binaries, or find them in the cache")
    commands.add_parser("where", help="print the directory the binaries are (to be) in")
    for name in ("start", "status", "stop"):
        sub = commands.add_parser(name)
        sub.add_argument(
            "--state-dir",
            help=f"the cluster's directory (default ${STATE_ENV} or {DEFAULT_STATE_DIR})",
        )
        if name == "stop":
            sub.add_argument("--purge", action="store_true", help="remove its data too")
    args = parser.parse_args(argv)

    try:
        if args.command == "build":
            begun = time.monotonic()
            directory, did_build = _build(quiet=False)
            took = time.monotonic() - begun
            how = f"built in {took:.0f} s" if did_build else "cached"
            if not did_build and took > 1:
                how = f"built by another process; waited {took:.0f} s"
            print(f"{directory} ({how})")
            return 0
        if args.command == "where":
            print(bin_dir())
            return 0
        state_dir = _state_dir(args.state_dir)
        recorded = KubeCluster.recorded(state_dir)
        if args.command == "start":
            if recorded is not None and recorded.answers():
                print(recorded.kubeconfig)
                return 0
            if recorded is not None:
                recorded.stop()  # whatever is left of it
            cluster = KubeCluster(state_dir)
            cluster.start()
            print(cluster.kubeconfig)
            return 0
        if args.command == "status":
            if recorded is not None and recorded.answers():
                print(f"running: {recorded.server}, KUBECONFIG={recorded.kubeconfig}")
                return 0
            print("not running")
            return 1
        if recorded is not None:
            recorded.stop(purge=args.purge)
        elif args.purge:
            shutil.rmtree(state_dir, ignore_errors=True)
        print("stopped" + (f"; data kept in {state_dir}" if not args.purge else ""))
        return 0
    except KubeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
