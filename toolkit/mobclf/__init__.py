"""mobclf: take a news classifier from a server GPU to a phone, and prove it still agrees with the original."""

__version__ = "0.1.0"
