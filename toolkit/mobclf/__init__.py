"""mobclf: take a news classifier from a server GPU to a phone, and prove it still agrees with the original."""

from mobclf import quiet

__version__ = "0.1.0"

quiet.install()  # before any stage imports torch: the toolchain's noise that is not the user's business (quiet.py)
