"""``python -m openvocab.cli ...`` (and ``torchrun -m openvocab.cli train ...``) run the ``openvocab`` command."""

from openvocab.cli import main

main()
