"""template.yaml as the deploy, unit and handler tests read it: the path and the decoded template."""
from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yaml"


def sam_template() -> dict:
    from cfnlint.decode import decode

    tpl, matches = decode(str(TEMPLATE))
    assert tpl is not None, matches
    return json.loads(json.dumps(tpl))
