"""`soundscape synth ...`: labelled synthetic soundscapes as files (soundscape.synthetic)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import click

from soundscape.errors import UserError

_codec = click.option("--codec", type=click.Choice(["flac", "wav"]), default="flac",
                      show_default=True, help="File format (16-bit PCM either way).")
_seed = click.option("--seed", default=0, show_default=True,
                     help="Names the data set: the same seed writes the same audio and labels.")


@click.group("synth")
def synth() -> None:
    """Labelled synthetic soundscapes: a dozen parametric species over field backgrounds.

    Every 10 s chunk holds 0-3 species (whistles, trills, harmonic stacks, buzzes, ...)
    at random times and SNRs over wind, rain, hum or a silent recorder floor; labels.csv
    says which. Seeded and reproducible.
    """


@synth.command("species")
def species() -> None:
    """List the species and backgrounds the generator knows."""
    from soundscape.synthetic import BACKGROUNDS, SPECIES

    click.echo(f"{'species':<18} {'kind':<8} {'band Hz':>13} {'call s':>11} {'calls':>6}")
    for s in SPECIES:
        band = f"{s.band_hz[0]:.0f}-{s.band_hz[1]:.0f}"
        call = f"{s.call_s[0]:g}-{s.call_s[1]:g}"
        click.echo(f"{s.name:<18} {s.kind:<8} {band:>13} {call:>11} "
                   f"{s.calls[0]}-{s.calls[1]:<4}")
    click.echo(f"backgrounds: {', '.join(BACKGROUNDS)}")


@synth.command("chunks")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--count", default=100, show_default=True, help="Chunks to write.")
@_seed
@_codec
def chunks(folder: Path, count: int, seed: int, codec: str) -> None:
    """Write COUNT labelled 10 s chunks and labels.csv into FOLDER."""
    from soundscape.synthetic import write_chunks

    if count < 1:
        raise click.BadParameter("--count must be at least 1")
    try:
        labels = write_chunks(folder, count, seed, codec, progress=True)  # type: ignore[arg-type]
    except FileExistsError as exc:
        raise UserError(f"{exc} exists", hint="write into an empty folder") from None
    click.echo(f"wrote {count} chunks and {labels}")


@synth.command("archive")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--start", default="2025-06-01T04:00:00", show_default=True,
              help="UTC start of the first file (ISO 8601, whole seconds).")
@click.option("--minutes", default=60, show_default=True, type=float,
              help="Total length (rounded up to whole 10 s chunks).")
@click.option("--file-minutes", default=10, show_default=True, type=float,
              help="Length of each file (a multiple of 10 s).")
@_seed
@_codec
def archive(folder: Path, start: str, minutes: float, file_minutes: float, seed: int,
            codec: str) -> None:
    """Write an AudioMoth-style archive into FOLDER: YYYYMMDD_HHMMSS files plus labels.csv.

    The archive replay takes FOLDER's name as the station id unless told otherwise, e.g.
    `soundscape synth archive archive/marsh-01 --minutes 120`.
    """
    from soundscape.synthetic import CHUNK_SECONDS, write_archive

    try:
        moment = datetime.fromisoformat(start.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UserError(f"cannot read --start {start!r}",
                        hint="use ISO 8601, e.g. 2025-06-01T04:00:00Z") from None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    seconds = int(-(-minutes * 60 // CHUNK_SECONDS)) * CHUNK_SECONDS
    file_seconds = file_minutes * 60
    if seconds <= 0:
        raise click.BadParameter("--minutes must be positive")
    if file_seconds <= 0 or file_seconds % CHUNK_SECONDS:
        raise click.BadParameter(f"--file-minutes must be a positive multiple of "
                                 f"{CHUNK_SECONDS} s, got {file_seconds:g} s")
    try:
        paths = write_archive(folder, moment, seconds, int(file_seconds), seed,
                              codec,  # type: ignore[arg-type]
                              progress=True)
    except FileExistsError as exc:
        raise UserError(f"{exc} exists",
                        hint="write into an empty folder; nothing is overwritten") from None
    except ValueError as exc:
        raise UserError(str(exc)) from None
    click.echo(f"wrote {len(paths)} files ({seconds / 60:g} min) from {paths[0].name} "
               f"to {paths[-1].name} and {folder / 'labels.csv'}")
