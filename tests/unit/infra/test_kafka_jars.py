"""The jar cache counts as complete only when its manifest lists every jar at its size;
a damaged manifest means fetch again, never a traceback at `infra up`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from soundscape.infra.kafka.jars import KafkaJars


def _cache(tmp_path: Path) -> KafkaJars:
    jars = KafkaJars(tmp_path, "3.9.1")
    jars.lib_dir.mkdir(parents=True)
    (jars.lib_dir / "kafka_2.13-3.9.1.jar").write_bytes(b"x" * 10)
    (jars.lib_dir / "kafka-clients-3.9.1.jar").write_bytes(b"y" * 4)
    return jars


def test_a_manifest_matching_the_jars_is_complete(tmp_path: Path) -> None:
    jars = _cache(tmp_path)
    jars.manifest.write_text(json.dumps({"jars": {"kafka_2.13-3.9.1.jar": 10,
                                                  "kafka-clients-3.9.1.jar": 4}}))
    assert jars.is_complete()
    (jars.lib_dir / "kafka-clients-3.9.1.jar").write_bytes(b"changed")
    assert not jars.is_complete()


@pytest.mark.parametrize("text", ["", "{half", "[]", '{"jars": []}', '{"jars": 7}',
                                  '{"other": {}}', '{"jars": {"kafka-clients-3.9.1.jar": 4}}'])
def test_a_damaged_or_partial_manifest_means_fetch_again(tmp_path: Path, text: str) -> None:
    jars = _cache(tmp_path)
    jars.manifest.write_text(text)
    assert not jars.is_complete()
