"""Container images for compose and testcontainers, built here when no registry is reachable.

Each image is first looked for locally; then, if pulling is allowed, pulled from its
registry and tagged with the local name; else built from what this machine can reach: a
Debian root made with debootstrap (imported as the base image), Debian packages installed
inside with `docker build --network host`, Kafka's jars from the project's Maven cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable
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
#: Label of every image built here: the digest of what it was built from (source below).
SOURCE_LABEL = "org.soundscape.source-sha256"


@dataclass(frozen=True)
class ImageSpec:
    name: str
    tag: str
    upstream: str | None
    build: Callable[[Settings, str, dict[str, str]], None]  # settings, tag, labels
    #: Digest of the files the image is built from; a present image with another digest
    #: is rebuilt, so a changed entrypoint or project tree never runs from a stale image.
    #: None (or a source answering None): being present is enough.
    source: Callable[[Settings], str | None] | None = None


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


def debian_mirror(settings: Settings) -> str:
    """The mirror this machine's apt uses (a deb822 `URIs:` line), else Debian's CDN."""
    if settings.images.debian_mirror:
        return settings.images.debian_mirror
    for source in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for line in source.read_text(errors="replace").splitlines():
            if line.startswith("URIs:") and "security" not in line:
                return line.split()[1]
    return _DEFAULT_MIRROR


def build_base(settings: Settings, tag: str, labels: dict[str, str]) -> None:
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


def _docker_build(settings: Settings, tag: str, context: Path, *build_args: str,
                  labels: dict[str, str] | None = None) -> None:
    args = ["--build-arg", f"BASE={settings.images.base_tag}"]
    for arg in build_args:
        args += ["--build-arg", arg]
    for key, value in (labels or {}).items():
        args += ["--label", f"{key}={value}"]
    docker("build", "--network", "host", *args, "-t", tag, str(context))


def build_postgres(settings: Settings, tag: str, labels: dict[str, str]) -> None:
    _docker_build(settings, tag, HERE / "postgres", labels=labels)


def build_kafka(settings: Settings, tag: str, labels: dict[str, str]) -> None:
    jars = KafkaJars(settings.cache_dir, settings.kafka.version)
    jars.ensure()
    with tempfile.TemporaryDirectory(prefix="soundscape-kafka-image-") as tmp:
        context = Path(tmp)
        shutil.copytree(HERE / "kafka", context, dirs_exist_ok=True)
        shutil.copytree(jars.lib_dir, context / "libs")
        _docker_build(settings, tag, context, labels=labels)


def source_root() -> Path:
    """The checkout the package runs from; the project image is built from its wheel."""
    root = HERE.parents[1]
    if not (root / "pyproject.toml").is_file():
        raise ServiceError(
            "the project image is built from a source checkout, and this install has none",
            hint="run `soundscape images build soundscape` from a git clone (pip install -e .)",
        )
    return root


def build_wheel(dest: Path) -> Path:
    """The project's wheel (no dependencies), built from the source checkout into dest."""
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dest),
         str(source_root())],
        capture_output=True, text=True, timeout=600,
    )
    if result.returncode != 0:
        raise ServiceError("building the project's wheel failed:\n" + result.stderr[-2000:])
    [wheel] = dest.glob("soundscape-*.whl")
    return wheel


def build_project(settings: Settings, tag: str, labels: dict[str, str]) -> None:
    with tempfile.TemporaryDirectory(prefix="soundscape-image-") as tmp:
        context = Path(tmp)
        shutil.copy(HERE / "soundscape" / "Dockerfile", context / "Dockerfile")
        build_wheel(context / "wheels")
        shutil.copy(host_ca_bundle(), context / "host-ca.crt")
        index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple")
        _docker_build(settings, tag, context, f"PIP_INDEX_URL={index}", labels=labels)


def members_digest(members: Iterable[tuple[str, bytes]]) -> str:
    """sha256 of names and contents only, never of file times or archive metadata: the
    same sources give the same digest in any clone."""
    digest = hashlib.sha256()
    for name, content in sorted(members):
        digest.update(name.encode() + b"\0" + hashlib.sha256(content).digest())
    return digest.hexdigest()


def folder_members(folder: Path) -> list[tuple[str, bytes]]:
    return [(str(path.relative_to(folder)), path.read_bytes())
            for path in folder.rglob("*") if path.is_file() and "__pycache__" not in path.parts]


def postgres_source(settings: Settings) -> str:
    return members_digest([*folder_members(HERE / "postgres"),
                           ("BASE", settings.images.base_tag.encode())])


def kafka_source(settings: Settings) -> str:
    return members_digest([*folder_members(HERE / "kafka"),
                           ("BASE", settings.images.base_tag.encode()),
                           ("KAFKA_VERSION", settings.kafka.version.encode())])


def project_source(settings: Settings) -> str | None:
    """The Dockerfile and the members of a wheel of this tree (built in seconds); None
    when installed without a source checkout (then the image present is used)."""
    if not (HERE.parents[1] / "pyproject.toml").is_file():
        return None
    with tempfile.TemporaryDirectory(prefix="soundscape-wheel-") as tmp:
        with zipfile.ZipFile(build_wheel(Path(tmp))) as wheel:
            members = [(f"wheel/{name}", wheel.read(name)) for name in wheel.namelist()]
    return members_digest([*members, *folder_members(HERE / "soundscape"),
                           ("BASE", settings.images.base_tag.encode())])


def is_current(spec: ImageSpec, digest: str | None) -> bool:
    """Present and built from these sources, or pulled from its registry."""
    result = docker("image", "inspect", "--format", "{{json .}}", spec.tag,
                    check=False, timeout=30)
    if result.returncode != 0:
        return False
    if digest is None:
        return True
    image = json.loads(result.stdout)
    labels = (image.get("Config") or {}).get("Labels") or {}
    pulled = spec.upstream is not None and spec.upstream in (image.get("RepoTags") or [])
    return labels.get(SOURCE_LABEL) == digest or pulled


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
        ImageSpec("postgres", images.postgres_tag, "postgres:15-bookworm", build_postgres,
                  postgres_source),
        ImageSpec("kafka", images.kafka_tag, f"apache/kafka:{settings.kafka.version}",
                  build_kafka, kafka_source),
        ImageSpec("soundscape", images.project_tag, None, build_project, project_source),
    ]


def ensure_images(settings: Settings, only: list[str] | None = None,
                  rebuild: bool = False) -> dict[str, dict[str, object]]:
    """Make the images present; returns per image how it was obtained and in how long.

    The Debian base is made only when an image has to be built on it. An image built
    here from other sources than the tree's (a changed entrypoint, other project code) is
    rebuilt; one pulled from its registry is kept.
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
        digest = spec.source(settings) if spec.source else None
        if not (rebuild and spec.name in names) and is_current(spec, digest):
            how = "present"
        elif spec.upstream and settings.images.pull == "auto" and _pull(spec):
            how = f"pulled {spec.upstream}"
        else:
            if spec.name != "debian" and "debian" not in report:
                obtain(by_name["debian"])
                started = time.monotonic()  # the base reports its own time
            log.info("building image", image=spec.tag)
            spec.build(settings, spec.tag, {SOURCE_LABEL: digest} if digest else {})
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
