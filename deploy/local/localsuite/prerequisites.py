"""Prerequisites: Java for Kafka, build tools for the first fetch, the venv's supervisor."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

from .common import EngineError, run_captured
from .layout import JAVA_MIN


def require_java() -> str:
    java = shutil.which("java")
    if java is None:
        raise EngineError(
            f"java not found: install a JDK {JAVA_MIN}: apt-get install openjdk-17-jdk-headless"
        )
    out = run_captured([java, "-version"])
    found = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    major = 0
    if found:
        major = int(found.group(1))
        if major == 1 and found.group(2):  # "1.8.0_392" style
            major = int(found.group(2))
    if major < JAVA_MIN:
        raise EngineError(
            f"{java} is Java {major or 'of unknown version'}, Kafka needs {JAVA_MIN}+: "
            f"install a JDK {JAVA_MIN}: apt-get install openjdk-17-jdk-headless "
            "(and put it first on PATH)"
        )
    return java


def require_tool(name: str, why: str, install: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise EngineError(f"{name} not found ({why}): {install}")
    return path


def supervisor_binary(name: str) -> Path:
    # Not resolved: the venv's bin/python is a symlink to the base interpreter.
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise EngineError(
            f"{name} not found next to {sys.executable}: run engines.py with the project's venv "
            "(`make venv` installs supervisor from uv.lock)"
        )
    return path
