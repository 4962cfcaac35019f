"""`cpb pki`: the project's certificate authority for its pods' NATS (issue 14)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

import click

from cpb.state import find_spec_file

if TYPE_CHECKING:
    from cpb.cli.options import Options
    from cpb.security.pki import Pki

# cpb.security.pki and `cryptography` (tens of ms) are imported by the
# commands below, not here: every `cpb` command line imports this module.


def _pki(opts: Options) -> Pki:
    from cpb.security.pki import Pki, default_folder

    spec_file: Path = opts.spec_file or find_spec_file(Path.cwd())
    return Pki(default_folder(spec_file.resolve().parent))


@click.group()
def pki() -> None:
    """The project's CA and certificates (kept outside the project, keys 0600)."""


@pki.command("show")
@click.pass_obj
def pki_show(opts: Options) -> None:
    """Where the keys are, and each certificate's subject and expiry."""
    from cryptography import x509

    from cpb.security.pki import check_key_mode

    found = _pki(opts)
    click.echo(f"key folder: {found.folder}")
    if not found.ca_cert.exists():
        click.echo("no CA yet: cpb makes one on first need (or `cpb pki rotate`)")
        return
    now = dt.datetime.now(dt.timezone.utc)
    for cert_file in sorted(found.folder.glob("*.crt")):
        key = cert_file.with_suffix(".key")
        if key.exists():
            check_key_mode(key)
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
        days = (cert.not_valid_after_utc - now).days
        click.echo(f"{cert_file.stem:20} {cert.subject.rfc4514_string():28} "
                   f"expires {cert.not_valid_after_utc:%Y-%m-%d} ({days} days)")


@pki.command("rotate")
@click.pass_obj
def pki_rotate(opts: Options) -> None:
    """A new CA and new certificates: every old certificate is refused from now on."""
    from cpb.security.pki import SUBMITTER_ROLE

    found = _pki(opts)
    found.rotate()
    found.ensure([SUBMITTER_ROLE])
    click.echo(f"new CA and certificates in {found.folder}; the next `cpb up` re-creates "
               "the running pods with them (`cpb plan`: certificates renewed)")
