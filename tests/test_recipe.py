"""Recipe argument handling; each recipe runs end to end on the real assets in tests/test_multiprocess.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_recipe_rejects_unknown_yaml_keys(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("labels_per_klass: 2\n")
    result = subprocess.run([sys.executable, str(ROOT / "recipes" / "text_selftrain.py"), "--config", str(config)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "labels_per_klass" in result.stderr
