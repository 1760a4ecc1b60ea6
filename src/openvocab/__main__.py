"""``python -m openvocab ...`` is the ``openvocab`` command."""

from openvocab.cli import main

main()
