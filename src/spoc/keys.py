"""`spoc keys generate`: the key pair that lets only notify read requesters' access keys."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from spoc_platform.sealing import KeyPair, generate_key_pair, recipient_of

keys = typer.Typer(help="The access-key pair: intake seals to its public half, notify opens.")


@keys.command("generate")
def generate() -> None:
    """Prints a new pair as environment lines: give the first to intake, the second to notify
    (a secret: keep it in your secret store, never in a file under version control)."""
    pair = generate_key_pair()
    typer.echo(f"SPOC_INTAKE_ACCESS_KEY_RECIPIENT={pair.recipient}")
    typer.echo(f"SPOC_NOTIFY_ACCESS_KEY_SECRET={pair.secret}")


KEY_FILE = "access-key.secret"


def data_dir_key_pair(data_dir: Path) -> KeyPair:
    """The embedded default's own pair, made on its first start and kept in the data directory
    (owner-only), so no installation runs on the well-known development pair."""
    path = data_dir / KEY_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        # Written aside, then linked into place: a reader never sees a half-written file, and
        # of two first starts at once the first link wins and both use its key.
        draft = data_dir / f".{KEY_FILE}.{os.getpid()}"
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as file:
            file.write(generate_key_pair().secret + "\n")
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    secret = path.read_text(encoding="ascii").strip()
    return KeyPair(recipient=recipient_of(secret), secret=secret)
