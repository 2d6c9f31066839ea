"""``python -m ohq_pynq``: see :mod:`ohq_pynq.cli`."""
import sys

from .cli import main

sys.exit(main())
