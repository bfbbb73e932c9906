"""mobclf: take a news classifier from a server GPU to a phone, and prove it still agrees with the original."""

import logging

__version__ = "0.1.0"

# Import-time noise of the pinned toolchain that says nothing about the user's run: torchao's CUDA-only
# extensions failing to load on a CPU machine, and torch's deprecation notes about registering Enum constants.
logging.getLogger("torchao").setLevel(logging.ERROR)
logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)
