"""Every module of the package is exercised by a test: imported by one directly, a
command registered in `soundscape` (whose every --help is rendered by the reference
tests, and whose main paths the integration tests run in subprocesses), or named below
with the test that runs it. A new module with none of these fails here."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[2]
ROOMS = {"soundscape": "soundscape", "app": "soundscape.app", "synthetic": "soundscape.synthetic",
         "producers": "soundscape.producers", "processors": "soundscape.processors",
         "sinks": "soundscape.sinks", "models": "soundscape.models", "infra": "soundscape.infra",
         "web": "soundscape.web"}

#: module -> (test file, text in it that shows the module runs there)
EXERCISED_ELSEWHERE: dict[str, tuple[str, str]] = {
    "soundscape": ("tests/integration/producers/conftest.py", '"-m", "soundscape"'),
    "soundscape.__main__": ("tests/integration/producers/conftest.py", '"-m", "soundscape"'),
    "soundscape.app.pipeline_threads": ("tests/integration/app/test_demo.py", "run_demo"),
    "soundscape.app.chaos": ("tests/integration/app/test_chaos.py", '"soundscape", "chaos"'),
    "soundscape.app.chaos_audit": ("tests/integration/app/test_chaos.py", '"soundscape", "chaos"'),
    "soundscape.app.chaos_children": ("tests/integration/app/test_chaos.py",
                                      '"soundscape", "chaos"'),
    "soundscape.app.chaos_cli": ("tests/integration/app/test_chaos.py", '"soundscape", "chaos"'),
    "soundscape.infra.kafka": ("tests/conftest.py", "backend"),
    "soundscape.infra.kafka.jars": ("tests/conftest.py", "backend"),
    "soundscape.infra.postgres": ("tests/conftest.py", "backend"),
    "soundscape.infra.images": ("tests/integration/infra/test_compose.py", "ensure_images"),
    "soundscape.models.embedder": ("tests/unit/models/test_branch_modules.py", "embed_classifier"),
    "soundscape.models.mlp": ("tests/unit/models/test_branch_modules.py", '"meta"'),
    "soundscape.models.wave_cnn": ("tests/unit/models/test_branch_modules.py", '"wave_cnn"'),
    "soundscape.models.verify": ("tests/integration/models/test_models_cli.py", '"verify"'),
    "soundscape.models.bench": ("tests/integration/models/test_models_cli.py", '"bench"'),
    "soundscape.models.frontend.bench": ("tests/unit/models/frontend/test_cli.py",
                                         '"frontend", "bench", "--chunks"'),
    "soundscape.sinks.bench": ("tests/integration/sinks/test_sink_cli.py", '"bench", "sink"'),
    "soundscape.sinks.bench_parallel": ("tests/integration/sinks/test_sink_cli.py",
                                        '"--sinks", "1,2"'),
    "soundscape.producers.edge_bench": ("tests/unit/producers/test_edge_scoring.py",
                                        '"bench", "edge"'),
    "soundscape.sinks.review_manifest": ("tests/integration/web/test_web_app.py",
                                         '"reviews", "export"'),
    "soundscape.web.db": ("tests/integration/web/conftest.py", "create_app"),
    "soundscape.sinks.notifier": ("tests/integration/sinks/test_notifier.py",
                                  '"notify", "run"'),
    "soundscape.web.queries": ("tests/integration/web/test_web_app.py", "/api/v1/detections"),
    "soundscape.sinks.migrations.env": ("tests/integration/sinks/test_migrations.py", "upgrade"),
    "soundscape.models.birdnet.convert": ("tests/integration/models/birdnet/conftest.py",
                                          "convert"),
    "soundscape.models.birdnet.isolated": ("tests/integration/models/birdnet/conftest.py",
                                           "convert"),
    "soundscape.models.birdnet.reference": (
        "tests/integration/models/birdnet/test_birdnet_import.py", "agreement"),
}


def _modules() -> set[str]:
    found = set()
    for folder, package in ROOMS.items():
        for path in (ROOT / folder).rglob("*.py"):
            if "versions" in path.parts:  # migration scripts: run by tests through alembic
                continue
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found.add(".".join([package, *parts]))
    return found


def _imported_by_tests() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "tests").rglob("*.py"):
        text = path.read_text()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
        names.update(re.findall(r"soundscape(?:\.\w+)+", text))
    return names


def _command_modules() -> set[str]:
    from soundscape.app.cli import cli

    modules: set[str] = set()

    def walk(command: click.Command) -> None:
        if command.callback is not None:
            modules.add(command.callback.__module__)
        for sub in getattr(command, "commands", {}).values():
            walk(sub)

    walk(cli)
    return modules


def test_every_module_is_exercised_by_a_test() -> None:
    covered = _imported_by_tests() | _command_modules() | set(EXERCISED_ELSEWHERE)
    missing = sorted(_modules() - covered)
    assert not missing, (
        f"no test imports or runs {missing}: add one, or name the test that runs it in "
        "EXERCISED_ELSEWHERE")


def test_the_named_tests_exist_and_run_what_they_claim() -> None:
    modules = _modules()
    for module, (test_file, evidence) in EXERCISED_ELSEWHERE.items():
        assert module in modules, f"{module} is gone: drop it from EXERCISED_ELSEWHERE"
        text = (ROOT / test_file).read_text()
        assert evidence in text, f"{test_file} does not show {module} running ({evidence!r})"
