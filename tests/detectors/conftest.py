"""The helpers beside this file (``synth``) are importable: this folder is not a package."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
