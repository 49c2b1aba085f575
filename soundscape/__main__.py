"""`python -m soundscape`: the `soundscape` command, found through the console script the
package declares (pyproject's [project.scripts]), so the core names no room: the wiring
stays above the rooms, where that declaration points."""

from importlib.metadata import entry_points


def _command() -> None:
    found = entry_points(group="console_scripts", name="soundscape")
    if not found:
        raise SystemExit("soundscape is not installed: pip install -e . (or bash infra/setup.sh)")
    next(iter(found)).load()()


_command()
