"""``python -m mobclf``: the command line, as ``torchrun -m mobclf`` (and ``mobclf run --nproc N``) starts it."""

from mobclf.cli import main

main()
