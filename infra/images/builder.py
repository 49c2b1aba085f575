"""Container images for compose and testcontainers, built here when no registry is reachable.

Each image is first looked for locally; then, if pulling is allowed, pulled from its
registry and tagged with the local name; else built from what this machine can reach: a
Debian root made with debootstrap (imported as the base image), Debian packages installed
inside with `docker build --network host`, Kafka's jars from the project's Maven cache.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from soundscape.errors import ServiceError
from soundscape.infra import process
from soundscape.infra.kafka.jars import KafkaJars
from soundscape.logs import get_logger
from soundscape.settings import Settings

log = get_logger(__name__)
HERE = Path(__file__).parent
_DEFAULT_MIRROR = "http://deb.debian.org/debian"


@dataclass(frozen=True)
class ImageSpec:
    name: str
    tag: str
    upstream: str | None
    build: Callable[[Settings, str], None]


def docker(*args: str, timeout: float = 1800, check: bool = True,
           input_bytes: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    binary = process.require_tool("docker", "install Debian's docker.io: `bash infra/setup.sh --docker`")
    result = subprocess.run([binary, *args], capture_output=True, timeout=timeout, input=input_bytes)
    if check and result.returncode != 0:
        detail = (result.stdout + result.stderr).decode(errors="replace")[-3000:]
        raise ServiceError(f"`docker {' '.join(args[:3])}` failed:\n{detail}")
    return result


def engine_running() -> bool:
    return shutil.which("docker") is not None and docker("info", check=False, timeout=30).returncode == 0


def image_exists(tag: str) -> bool:
    return docker("image", "inspect", tag, check=False, timeout=30).returncode == 0


def debian_mirror(settings: Settings) -> str:
    """The mirror this machine's apt uses (a deb822 `URIs:` line), else Debian's CDN."""
    if settings.images.debian_mirror:
        return settings.images.debian_mirror
    for source in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for line in source.read_text(errors="replace").splitlines():
            if line.startswith("URIs:") and "security" not in line:
                return line.split()[1]
    return _DEFAULT_MIRROR


def build_base(settings: Settings, tag: str) -> None:
    debootstrap = process.require_tool("debootstrap", "`bash infra/setup.sh --docker` installs it")
    with tempfile.TemporaryDirectory(prefix="soundscape-rootfs-") as tmp:
        root = Path(tmp) / "root"
        result = subprocess.run(
            [debootstrap, "--variant=minbase", settings.images.debian_suite, str(root),
             debian_mirror(settings)],
            capture_output=True, text=True, timeout=1800,
        )
        if result.returncode != 0:
            raise ServiceError("debootstrap failed:\n" + (result.stderr or result.stdout)[-3000:])
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        assert tar.stdout is not None
        imported = subprocess.run(
            [process.require_tool("docker", ""), "import", "-", tag],
            stdin=tar.stdout, capture_output=True, timeout=600,
        )
        tar.wait()
        if imported.returncode != 0:
            raise ServiceError("docker import failed: " + imported.stderr.decode()[-2000:])


def _docker_build(settings: Settings, tag: str, context: Path, *build_args: str) -> None:
    args = ["--build-arg", f"BASE={settings.images.base_tag}"]
    for arg in build_args:
        args += ["--build-arg", arg]
    docker("build", "--network", "host", *args, "-t", tag, str(context))


def build_postgres(settings: Settings, tag: str) -> None:
    _docker_build(settings, tag, HERE / "postgres")


def build_kafka(settings: Settings, tag: str) -> None:
    jars = KafkaJars(settings.cache_dir, settings.kafka.version)
    jars.ensure()
    with tempfile.TemporaryDirectory(prefix="soundscape-kafka-image-") as tmp:
        context = Path(tmp)
        shutil.copytree(HERE / "kafka", context, dirs_exist_ok=True)
        shutil.copytree(jars.lib_dir, context / "libs")
        _docker_build(settings, tag, context)


def source_root() -> Path:
    """The checkout the package runs from; the project image is built from its wheel."""
    root = HERE.parents[1]
    if not (root / "pyproject.toml").is_file():
        raise ServiceError(
            "the project image is built from a source checkout, and this install has none",
            hint="run `soundscape images build soundscape` from a git clone (pip install -e .)",
        )
    return root


def build_project(settings: Settings, tag: str) -> None:
    import sys

    with tempfile.TemporaryDirectory(prefix="soundscape-image-") as tmp:
        context = Path(tmp)
        shutil.copy(HERE / "soundscape" / "Dockerfile", context / "Dockerfile")
        result = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
             str(context / "wheels"), str(source_root())],
            capture_output=True, text=True, timeout=600,
        )
        if result.returncode != 0:
            raise ServiceError("building the project's wheel failed:\n" + result.stderr[-2000:])
        shutil.copy(host_ca_bundle(), context / "host-ca.crt")
        index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple")
        _docker_build(settings, tag, context, f"PIP_INDEX_URL={index}")


def host_ca_bundle() -> Path:
    """The CA bundle this host's pip uses, for pip inside an image build."""
    for candidate in (os.environ.get("PIP_CERT"), os.environ.get("SSL_CERT_FILE"),
                      "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise ServiceError("no CA bundle found for the image build",
                       hint="install ca-certificates or set PIP_CERT to a CA bundle")


def specs(settings: Settings) -> list[ImageSpec]:
    images = settings.images
    return [
        ImageSpec("debian", images.base_tag, None, build_base),
        ImageSpec("postgres", images.postgres_tag, "postgres:15-bookworm", build_postgres),
        ImageSpec("kafka", images.kafka_tag, f"apache/kafka:{settings.kafka.version}", build_kafka),
        ImageSpec("soundscape", images.project_tag, None, build_project),
    ]


def ensure_images(settings: Settings, only: list[str] | None = None,
                  rebuild: bool = False) -> dict[str, dict[str, object]]:
    """Make the images present; returns per image how it was obtained and in how long.

    The Debian base is made only when an image has to be built on it.
    """
    if not engine_running():
        raise ServiceError(
            "no Docker engine answers",
            hint="`soundscape images engine` starts Debian's dockerd with host networking only",
        )
    by_name = {spec.name: spec for spec in specs(settings)}
    names = only or ["postgres", "kafka"]
    unknown = set(names) - set(by_name)
    if unknown:
        raise ServiceError(f"unknown image(s) {', '.join(sorted(unknown))}",
                           hint=f"choose from {', '.join(by_name)}")
    report: dict[str, dict[str, object]] = {}

    def obtain(spec: ImageSpec) -> None:
        started = time.monotonic()
        if image_exists(spec.tag) and not (rebuild and spec.name in names):
            how = "present"
        elif spec.upstream and settings.images.pull == "auto" and _pull(spec):
            how = f"pulled {spec.upstream}"
        else:
            if spec.name != "debian" and "debian" not in report:
                obtain(by_name["debian"])
                started = time.monotonic()  # the base reports its own time
            log.info("building image", image=spec.tag)
            spec.build(settings, spec.tag)
            how = "built locally"
        report[spec.name] = {"tag": spec.tag, "how": how,
                             "seconds": round(time.monotonic() - started, 1)}

    for name in names:
        obtain(by_name[name])
    return report


def _pull(spec: ImageSpec) -> bool:
    assert spec.upstream is not None
    if docker("pull", spec.upstream, check=False, timeout=600).returncode != 0:
        log.info("registry not reachable; building locally", image=spec.upstream)
        return False
    docker("tag", spec.upstream, spec.tag)
    return True


def start_engine(timeout_s: float = 60.0) -> str:
    """Start Debian's dockerd with no bridge and no iptables rules (host networking only)."""
    if engine_running():
        return "already running"
    dockerd = process.require_tool("dockerd", "`bash infra/setup.sh --docker` installs docker.io")
    log_path = Path("/var/log/soundscape-dockerd.log")
    with open(log_path, "ab") as out:
        subprocess.Popen([dockerd, "--bridge=none", "--iptables=false", "--ip-masq=false"],
                         stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    if not process.wait_for(engine_running, timeout_s, 0.5):
        raise ServiceError(f"dockerd did not start; see {log_path}:\n{process.tail(log_path)}")
    return "started"
