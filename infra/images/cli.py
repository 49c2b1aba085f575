"""`soundscape images`: the container images compose and the testcontainers backend use."""

from __future__ import annotations

import click

from soundscape.cli_context import current_settings


@click.group()
def images() -> None:
    """Start the Docker engine and obtain the images (pulled, or built here from Debian).

    No registry is needed: the base is a Debian root made with debootstrap, packages come
    from Debian, Kafka's jars from the project's Maven cache.
    """


@images.command("engine")
def images_engine() -> None:
    """Start Debian's dockerd with --bridge=none --iptables=false (host networking only)."""
    from soundscape.infra.images.builder import start_engine

    click.echo(f"docker engine: {start_engine()}")


@images.command("build")
@click.argument("names", nargs=-1)
@click.option("--rebuild", is_flag=True, help="Build again even if the image exists.")
def images_build(names: tuple[str, ...], rebuild: bool) -> None:
    """Obtain NAMES (debian, postgres, kafka, soundscape; default: postgres and kafka)."""
    from soundscape.infra.images.builder import ensure_images

    report = ensure_images(current_settings(), list(names) or None, rebuild=rebuild)
    for name, info in report.items():
        click.echo(f"{name:9} {info['tag']}: {info['how']} in {info['seconds']} s")
