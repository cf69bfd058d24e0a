"""``python -m napari_her2.cli``: the same command as ``napari-her2``."""

import sys

from . import main

sys.exit(main())
