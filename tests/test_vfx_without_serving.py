"""`vfx` never imports `serving`: every vfx module imports with serving blocked, and `vfx serve`
comes in only through the ``vfx.commands`` entry point."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

IMPORT_ALL = r"""
import importlib, importlib.abc, json, pkgutil, sys

class BlockServing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "serving" or name.startswith("serving."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
        return None

sys.meta_path.insert(0, BlockServing())
import vfx
failed, imported = {}, []
for module in pkgutil.walk_packages(vfx.__path__, "vfx."):
    try:
        importlib.import_module(module.name)
        imported.append(module.name)
    except Exception as exc:
        failed[module.name] = f"{type(exc).__name__}: {exc}"
from vfx.cli import app
commands = sorted(c.name or c.callback.__name__ for c in app.registered_commands)
print(json.dumps({"imported": imported, "failed": failed, "commands": commands,
                  "serving_loaded": [m for m in sys.modules if m.split(".")[0] == "serving"]}))
"""


def run_python(code: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_vfx_module_imports_with_serving_absent():
    report = run_python(IMPORT_ALL)
    assert report["failed"] == {}
    assert {"vfx.cli", "vfx.job", "vfx.pipeline", "vfx.consent.gate"} <= set(report["imported"])
    assert report["serving_loaded"] == []
    assert "run" in report["commands"] and "serve" not in report["commands"]


def test_vfx_serve_comes_from_the_entry_point():
    from importlib.metadata import entry_points

    plugins = {p.name: p.value for p in entry_points(group="vfx.commands")}
    assert plugins.get("serve") == "serving.cli:register"
    report = run_python("import json; from vfx.cli import app; "
                        "print(json.dumps({'commands': [c.name for c in app.registered_commands]}))")
    assert {"serve", "serve-key"} <= set(report["commands"])
