"""What a Raspberry Pi station needs: no PyTorch, no librosa; per-station SASL over TLS."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from soundscape.kafka_clients import producer_config
from soundscape.producers.delivery import BrokerWatch, patient_overrides
from soundscape.settings import Settings


def test_station_code_imports_no_heavy_libraries() -> None:
    code = (
        "import sys\n"
        "import soundscape.app.cli, soundscape.producers.station, soundscape.producers.sources\n"
        "import soundscape.producers.replay, soundscape.producers.bench\n"
        "heavy = {'torch', 'librosa', 'onnxruntime', 'sklearn'} & set(sys.modules)\n"
        "print(sorted(heavy))\n"
        "sys.exit(1 if heavy else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, f"heavy imports: {result.stdout} {result.stderr[-2000:]}"


def test_per_station_scram_over_tls_reaches_the_producer(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    settings = Settings(
        state_dir=tmp_path,
        kafka={"bootstrap_servers": "kafka.example.org:9093", "security_protocol": "SASL_SSL",
               "sasl_mechanism": "SCRAM-SHA-512", "sasl_username": "marsh-03",
               "sasl_password": "s3cret", "ssl_ca_location": str(ca)},
    )
    config = producer_config(settings, **patient_overrides(30, BrokerWatch("t")))
    assert config["security.protocol"] == "SASL_SSL"
    assert config["sasl.mechanism"] == "SCRAM-SHA-512"
    assert (config["sasl.username"], config["sasl.password"]) == ("marsh-03", "s3cret")
    assert config["ssl.ca.location"] == str(ca)
    assert config["enable.idempotence"] is True and config["acks"] == "all"
    assert config["message.timeout.ms"] == 0  # a station never gives a chunk up
    assert "s3cret" not in repr(settings.masked())


def test_plain_local_broker_by_default(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, kafka={"bootstrap_servers": "127.0.0.1:9092"})
    config = producer_config(settings)
    assert config["security.protocol"] == "PLAINTEXT" and "sasl.username" not in config
