"""Kafka's jars from Maven Central, fetched once with Maven and cached.

No tarball download is possible on our machines, but Maven Central is: a generated pom
lists org.apache.kafka:kafka_2.13 and a Log4j 2 binding, and `mvn dependency:copy-dependencies`
copies the whole runtime classpath. A manifest written last marks a complete fetch, so an
interrupted fetch or a truncated jar is noticed and fetched again.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

from soundscape.errors import ServiceError
from soundscape.infra import process
from soundscape.logs import get_logger

log = get_logger(__name__)
_POM_TEMPLATE = Path(__file__).with_name("pom.xml")


class KafkaJars:
    def __init__(self, cache_dir: Path, version: str) -> None:
        self.version = version
        self.root = cache_dir / f"kafka-{version}"
        self.lib_dir = self.root / "libs"
        self.manifest = self.root / "manifest.json"

    def classpath(self) -> str:
        return str(self.lib_dir / "*")

    def is_complete(self) -> bool:
        try:
            listed = json.loads(self.manifest.read_text())["jars"]
        except (OSError, ValueError, KeyError, TypeError):
            return False
        if not isinstance(listed, dict):
            return False  # a damaged manifest: fetch again
        for name, size in listed.items():
            jar = self.lib_dir / name
            if not jar.is_file() or jar.stat().st_size != size:
                log.warning("kafka jar missing or changed; fetching again", jar=name)
                return False
        return any(name.startswith("kafka_2.13-") for name in listed)

    def ensure(self) -> str:
        """The classpath, fetching the jars first if the cache is missing or incomplete."""
        if not self.is_complete():
            self.fetch()
        return self.classpath()

    def fetch(self) -> float:
        mvn = process.require_tool(
            "mvn", "install Maven: `bash infra/setup.sh` (Debian package maven)"
        )
        process.require_tool("java", "install Java 17+: `bash infra/setup.sh`")
        started = time.monotonic()
        staging = self.root.with_name(self.root.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        (staging / "libs").mkdir(parents=True)
        pom = staging / "pom.xml"
        pom.write_text(_POM_TEMPLATE.read_text().replace("@KAFKA_VERSION@", self.version))
        log.info("fetching Kafka jars from Maven Central", version=self.version)
        result = subprocess.run(
            [
                mvn,
                "-B",
                "-q",
                "-f",
                str(pom),
                "dependency:copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={staging / 'libs'}",
            ],
            capture_output=True,
            text=True,
            timeout=1800,
        )
        if result.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            detail = (result.stdout + result.stderr).strip()[-2500:]
            raise ServiceError(
                f"fetching Apache Kafka {self.version} jars from Maven Central failed:\n{detail}",
                hint="check that Maven Central is reachable and the version exists "
                "(SOUNDSCAPE_KAFKA__VERSION); then run the command again",
            )
        jars = {jar.name: jar.stat().st_size for jar in sorted((staging / "libs").glob("*.jar"))}
        if not any(name.startswith("kafka_2.13-") for name in jars):
            shutil.rmtree(staging, ignore_errors=True)
            raise ServiceError(f"Maven fetched no kafka_2.13 jar for version {self.version}")
        (staging / "manifest.json").write_text(json.dumps({"jars": jars}, indent=1))
        shutil.rmtree(self.root, ignore_errors=True)
        staging.rename(self.root)
        seconds = time.monotonic() - started
        log.info("kafka jars cached", jars=len(jars), seconds=round(seconds, 1), path=str(self.root))
        return seconds
