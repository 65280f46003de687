"""Dockerfile.cuda, checked without a Docker engine: same pins as pyproject.toml, CUDA builds,
non-root user, model store volume, ``vfx serve`` entry point."""
from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def _instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile.cuda").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def _pip_commands() -> list[list[str]]:
    commands = []
    for op, arg in _instructions():
        if op == "RUN":
            for part in re.split(r"&&|;", arg):
                words = shlex.split(part)
                if words[:1] == ["pip"]:
                    commands.append(words[1:])
    return commands


def _pins(commands: list[list[str]]) -> dict[str, str]:
    pins = {}
    for words in commands:
        if words[0] == "install":
            for word in words[1:]:
                if "==" in word and not word.startswith("-"):
                    name, version = word.split("==")
                    pins[name.lower()] = version
    return pins


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_image_installs_the_pyproject_pins_with_cuda_builds():
    requirements = {Requirement(r).name.lower(): Requirement(r) for r in _project()["dependencies"]}
    commands = _pip_commands()
    pins = _pins(commands)
    for name in ("torch", "torchvision"):  # pinned exactly in pyproject; the image must use the same versions
        assert str(requirements[name].specifier) == f"=={pins[name]}", name
    torch_install = next(w for w in commands if "torch==" + pins["torch"] in w)
    assert any("download.pytorch.org/whl/cu" in w for w in torch_install)  # the CUDA wheel index
    for name, version in pins.items():
        base = "onnxruntime" if name == "onnxruntime-gpu" else name
        if base in requirements:
            assert requirements[base].specifier.contains(Version(version)), f"{name}=={version} breaks pyproject's {requirements[base]}"
    # the project itself is installed (so every other pinned dependency comes from pyproject), then
    # the CPU onnxruntime is replaced by onnxruntime-gpu, never left beside it
    order = [" ".join(w) for w in commands]
    project = order.index("install .")
    assert project > order.index(next(c for c in order if "torch==" in c))
    assert order.index("uninstall -y onnxruntime") > project
    assert order.index(next(c for c in order if "onnxruntime-gpu==" in c)) > order.index("uninstall -y onnxruntime")


def test_image_runtime_user_store_and_entrypoint():
    steps = _instructions()
    base = next(arg for op, arg in steps if op == "FROM")
    assert base.startswith("nvidia/cuda:") and "-runtime-" in base
    python = re.search(r"python(3\.\d+)-venv", " ".join(arg for op, arg in steps if op == "RUN")).group(1)
    requires = _project()["requires-python"]
    assert f">={python}" in requires and Version(python + ".0") < Version(re.search(r"<([\d.]+)", requires).group(1))
    env = " ".join(arg for op, arg in steps if op == "ENV")
    store = re.search(r"VFX_MODEL_DIR=(\S+)", env).group(1)
    assert any(op == "VOLUME" and store in arg for op, arg in steps)
    manifest = re.search(r"VFX_MODEL_MANIFEST=(\S+)", env).group(1)
    workdir = next(arg for op, arg in steps if op == "WORKDIR")
    assert manifest == f"{workdir}/configs/models.yaml"
    users = [arg for op, arg in steps if op == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert next(arg for op, arg in reversed(steps) if op == "ENTRYPOINT") == '["vfx", "serve"]'
    copied = [source for op, arg in steps if op == "COPY" for source in arg.split()[:-1]]
    assert _project()["readme"] in copied  # `pip install .` needs it to build the package
    for source in copied:
        assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
