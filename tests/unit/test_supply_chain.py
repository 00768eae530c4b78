"""What building and installing never do: run code a checkpoint ships unless trusted, or take an
unpinned dependency. (What a request can never make the server do: tests/test_security.py.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import tomllib

from builder.errors import BuildError
from builder.inspect import inspect_checkpoint
from testkit.factories import make_tiny_bert

ROOT = Path(__file__).resolve().parent.parent.parent


def test_refused_remote_code_never_runs(tmp_path):
    model = make_tiny_bert(tmp_path / "m")
    marker = tmp_path / "remote-code-ran"
    (model / "modeling_custom.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    config = json.loads((model / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_custom.CustomModel"}
    (model / "config.json").write_text(json.dumps(config))
    with pytest.raises(BuildError, match="trust-remote-code"):
        inspect_checkpoint(model, "m")
    assert not marker.exists()


def test_dependencies_are_pinned():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + [r for group in project["optional-dependencies"].values() for r in group]
    loose = [r for r in requirements if not re.search(r"==[\w.]+", r)]
    assert not loose, f"unpinned: {loose}"
    constraints = [line for line in (ROOT / "constraints.txt").read_text().splitlines()
                   if line.strip() and not line.startswith("#")]
    assert constraints and all("==" in line for line in constraints)
