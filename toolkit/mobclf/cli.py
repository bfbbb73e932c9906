"""The ``mobclf`` command line: thin click commands that parse options and call one stage function each."""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="mobclf")
def main() -> None:
    """Take a news classifier from a server GPU to a phone, and prove it still agrees with the original."""


@main.group()
def data() -> None:
    """Read, check and split labelled news text into a dataset artifact."""
