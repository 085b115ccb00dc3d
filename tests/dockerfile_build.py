"""The Dockerfile read and its steps run where docker is absent, for the image and wheel tests.

``build(work)`` copies the build stage's files as its COPY lines say, runs its ``pip`` steps (the
wheel), runs the final stage's ``pip`` steps into a fresh virtualenv (the wheel installed with its
dependencies) and does its COPY of the rules, every absolute path moved under ``work/root``. It is
the costliest fixture of the suite (a virtualenv and every dependency installed), so one session
builds it once: tests/conftest.py's ``built`` fixture.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import venv
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")


@dataclass
class Stage:
    """One ``FROM`` of the Dockerfile with its instructions, in order."""

    image: str
    name: str | None
    steps: list[tuple[str, str]] = field(default_factory=list)

    def all(self, word: str) -> list[str]:
        """The arguments of every ``word`` instruction, in order."""
        return [rest for instruction, rest in self.steps if instruction == word]

    def one(self, word: str) -> str:
        """The arguments of the one ``word`` instruction (fails when there is not exactly one)."""
        (rest,) = self.all(word)
        return rest


def stages(text: str) -> list[Stage]:
    """The Dockerfile's stages, continuation lines joined and ``${ARG}`` replaced by the ARG's default."""
    arguments: dict[str, str] = {}
    found: list[Stage] = []
    for line in re.sub(r"\\\n", " ", text).splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        rest = re.sub(r"\$\{(\w+)\}", lambda m: arguments[m.group(1)], rest.strip())
        if word == "ARG" and not found:
            name, _, default = rest.partition("=")
            arguments[name] = default
        elif word == "FROM":
            image, _, name = rest.partition(" AS ")
            found.append(Stage(image.strip(), name.strip() or None))
        else:
            found[-1].steps.append((word, rest))
    return found


def environment(stage: Stage) -> dict[str, str]:
    """The ``ENV key=value ...`` variables of a stage."""
    return dict(pair.split("=", 1) for rest in stage.all("ENV") for pair in shlex.split(rest))


BUILD, IMAGE = stages(DOCKERFILE)


def outside_the_source_tree() -> dict[str, str]:
    """This process's environment without ``PYTHONPATH``: what a program of the built image must run
    with, so that nothing of the source tree (a test run's ``PYTHONPATH=$PWD``) leaks into it."""
    return {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}


@dataclass
class Built:
    """The image's steps, run: ``root`` stands for the image's ``/``, ``venv`` for its interpreter's prefix."""

    root: Path
    venv: Path

    def inside(self, path: str) -> str:
        """An absolute path of the image moved under ``root`` (a relative one as is)."""
        return str(self.root / path.lstrip("/")) if path.startswith("/") else path

    @property
    def wheel(self) -> Path:
        """The wheel the build stage made."""
        return next(self.root.rglob("covreq-*.whl"))


def _run_pip_steps(stage: Stage, built: Built, cwd: Path) -> None:
    """Run a stage's ``pip`` steps with its paths moved under ``built.root`` (``--mount`` binds dropped:
    the build stage's output is already there)."""
    for rest in stage.all("RUN"):
        words = [w for w in shlex.split(rest) if not w.startswith("--mount=")]
        if words[0] != "pip":
            continue
        command = " ".join(built.inside(w) if "*" in w else shlex.quote(built.inside(w)) for w in words)
        environment = outside_the_source_tree()
        subprocess.run(["bash", "-c", command], cwd=cwd, check=True, timeout=600,
                       env={**environment, "PATH": f"{built.venv / 'bin'}:{environment['PATH']}"})


def build(work: Path) -> Built:
    """The build stage's files copied as its COPY lines say, its pip steps run, the final stage's pip
    steps run into a fresh virtualenv, and its COPY of the rules done, all under ``work``."""
    env_dir = work / "venv"
    venv.create(env_dir, with_pip=True)
    result = Built(work / "root", env_dir)
    source = Path(result.inside(BUILD.one("WORKDIR")))
    source.mkdir(parents=True)  # WORKDIR makes its folder
    for rest in BUILD.all("COPY"):
        *sources, target = shlex.split(rest)
        for name in sources:
            copy = source / target / Path(name).name if target.endswith("/") or len(sources) > 1 else source / target
            (shutil.copytree if (ROOT / name).is_dir() else shutil.copy2)(ROOT / name, copy)
    _run_pip_steps(BUILD, result, source)
    _run_pip_steps(IMAGE, result, work)
    for rest in IMAGE.all("COPY"):
        name, target = shlex.split(rest)
        shutil.copytree(ROOT / name, result.inside(target))
    Path(result.inside(json.loads(IMAGE.one("VOLUME"))[0])).mkdir(parents=True)
    (result.root / "tmp").mkdir()
    return result
