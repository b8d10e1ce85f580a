"""The three install profiles of docs/install.md.

- training workstation: ``requirements/train.txt`` is installed by pip into a fresh venv, the
  project into it, and the training CLI runs there with neither rclpy nor rosbags importable;
- ROS 2 install: ``requirements/ros-distro.txt`` carries no ``ros-*`` wheel and keeps pytest
  below 9 (what the distros' launch_testing plugin accepts);
- no distro (``requirements.txt``): the training and robot files plus the ROS wheels.

To stay affordable on CI (installing torch alone is 5.5 GB and over a minute; the whole file took
141 s on the 2-core machine), the fresh venv does not download or unpack anything: it sees this
venv's installed copies of exactly the distributions that ``train.txt`` names and their
dependency closure (through a ``.pth`` file pointing at a directory of links), nothing else.
pip then checks that this set satisfies ``train.txt`` (``pip install -r`` has nothing to do,
``pip check`` finds no conflict), and the project is installed into the venv by pip. A package
that the training CLI needs but ``train.txt`` misses is absent there, and the CLI runs fail.
"""
from __future__ import annotations

import importlib.metadata as md
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]
REQS = REPO / "requirements"
PACKAGE_FILES = ["package.xml", "setup.py", "setup.cfg", "resource", "src", "launch", "config"]


def _requirement_lines(path: Path, seen: set[Path] | None = None) -> list[str]:
    """Requirement lines of a pip requirements file, ``-r`` includes expanded."""
    seen = seen if seen is not None else set()
    if path in seen:
        return []
    seen.add(path)
    out = []
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith(("-r ", "--requirement ")):
            out += _requirement_lines((path.parent / line.split(None, 1)[1]).resolve(), seen)
        else:
            out.append(line)
    return out


def _names(path: Path) -> dict[str, Requirement]:
    reqs = [Requirement(line) for line in _requirement_lines(path)]
    return {re.sub(r"[-_.]+", "-", r.name).lower(): r for r in reqs}


# ---------------------------------------------------------------- the files themselves (fast)

def test_ros_distro_profile_has_no_ros_wheels_and_pins_pytest_below_9():
    names = _names(REQS / "ros-distro.txt")
    ros_wheels = sorted(n for n in names if n.startswith("ros-"))
    assert not ros_wheels, f"ros-distro.txt would shadow the distro's packages with {ros_wheels}"
    assert "pytest" in names, "ros-distro.txt must pin pytest (launch_testing)"
    spec = names["pytest"].specifier
    assert not spec.contains("9.0.0") and not spec.contains("9.2.0"), f"pytest{spec} admits pytest 9"
    assert spec.contains("7.4.4") and spec.contains("8.4.2"), f"pytest{spec} refuses the distros' pytest"
    assert {"rosbags", "mujoco", "torch"} <= set(names), sorted(names)


def test_training_profile_has_no_ros_and_the_default_has_everything():
    train = _names(REQS / "train.txt")
    assert not [n for n in train if n.startswith("ros-") or n in ("rosbags", "mujoco", "rclpy")], sorted(train)
    default = _names(REPO / "requirements.txt")
    assert set(train) | set(_names(REQS / "robot.txt")) <= set(default)
    assert {"ros-rclpy", "ros-std-msgs", "pytest"} <= set(default)
    assert not default["pytest"].specifier, "the default profile keeps pytest unpinned (unchanged)"


def test_setup_stamp_covers_every_requirements_file():
    text = (REPO / "scripts" / "setup.sh").read_text()
    want = next(line for line in text.splitlines() if line.startswith("want="))
    assert "requirements/*.txt" in want and "requirements.txt" in want and "setup.py" in want, want


def test_setup_refuses_an_unknown_profile_and_ros_distro_without_a_sourced_distro(tmp_path):
    env = dict(os.environ, VENV=str(tmp_path / "venv"), PYTHON=sys.executable)
    r = subprocess.run(["bash", "scripts/setup.sh"], cwd=REPO, env=dict(env, PROFILE="gpu"),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "PROFILE=gpu: unknown profile (default, train, ros-distro)" in r.stderr, r.stderr
    fake = tmp_path / "python-without-rclpy"  # an interpreter on which `import rclpy` fails, as with no distro
    fake.write_text(f"#!/bin/sh\nif [ \"$2\" = 'import rclpy' ]; then exit 1; fi\nexec {sys.executable} \"$@\"\n")
    fake.chmod(0o755)
    r = subprocess.run(["bash", "scripts/setup.sh"], cwd=REPO, env=dict(env, PROFILE="ros-distro", PYTHON=str(fake)),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "rclpy is not importable; source /opt/ros/<distro>/setup.bash" in r.stderr, r.stderr
    assert not (tmp_path / "venv").exists()


# ---------------------------------------------------------------- the training profile, installed

def _closure(requirements) -> list[md.Distribution]:
    """Installed distributions of ``requirements`` and all they require, extras included (markers
    evaluated for this interpreter)."""
    todo = [(r.name, extra) for r in requirements for extra in ("", *r.extras)]
    seen, out = set(), {}
    while todo:
        name, extra = todo.pop()
        key = (re.sub(r"[-_.]+", "-", name).lower(), extra)
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = md.distribution(key[0])
        except md.PackageNotFoundError:
            continue
        out.setdefault(key[0], dist)
        for r in map(Requirement, dist.requires or []):
            if r.marker is None or r.marker.evaluate({"extra": extra}):
                todo += [(r.name, e) for e in ("", *r.extras)]
    return list(out.values())


def _overlay(dists: list[md.Distribution], where: Path) -> Path:
    """A directory of symlinks to the top-level files of ``dists`` (in this venv's site-packages)."""
    where.mkdir()
    for dist in dists:
        base = Path(dist.locate_file(""))
        for f in dist.files or []:
            top = f.parts[0]
            if top in ("..", "__pycache__") or (where / top).exists():
                continue
            if (base / top).exists():
                (where / top).symlink_to(base / top)
    return where


def _run(argv, env, cwd, timeout=300):
    return subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def train_venv(tmp_path_factory):
    """(venv bin dir, environment, seconds the install took) for the training profile."""
    root = tmp_path_factory.mktemp("train_profile")
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "AMENT_PREFIX_PATH", "VIRTUAL_ENV", "PYTHONHOME", "COLCON_PREFIX_PATH")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    t0 = time.monotonic()
    base_python = getattr(sys, "_base_executable", None) or sys.executable
    made = _run([base_python, "-m", "venv", "--without-pip", str(root / "venv")], env, root)
    if made.returncode != 0:
        pytest.skip(f"cannot create a venv here (python -m venv): {made.stderr.strip()[-300:]}")
    bin_dir = root / "venv" / "bin"
    py = str(bin_dir / "python")
    # this venv's pip installs into the new one (pip --python): no pip/setuptools of its own there,
    # so nothing hides the shared distributions
    pip = [sys.executable, "-m", "pip", "--python", py]
    probe = _run(pip + ["--version"], env, root)
    if probe.returncode != 0:
        pytest.skip(f"pip cannot install into a new venv (pip --python): {probe.stderr.strip()[-300:]}")
    site = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], env, root).stdout.strip())
    wanted = _names(REQS / "train.txt")
    shared = _closure(wanted.values())
    have = {re.sub(r"[-_.]+", "-", d.metadata["Name"]).lower() for d in shared}
    assert set(wanted) <= have, f"not installed in this venv: {sorted(set(wanted) - have)}"
    overlay = _overlay(shared, root / "train_packages")
    (site / "train_packages.pth").write_text(f"{overlay}\n")
    pkg = root / "pkg"
    pkg.mkdir()
    for name in PACKAGE_FILES:
        src = REPO / name
        (shutil.copytree(src, pkg / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
         if src.is_dir() else shutil.copy2(src, pkg / name))
    steps = {"venv": time.monotonic() - t0}
    # no index needed: train.txt is satisfied by the shared set, the project builds with its setuptools
    for label, argv in (("pip install -r train.txt", pip + ["install", "--no-index", "-r", str(REQS / "train.txt")]),
                        ("pip check", pip + ["check"]),
                        ("pip install project", pip + ["install", "-q", "--no-index", "--no-deps",
                                                       "--no-build-isolation", "--no-compile", str(pkg)])):
        t = time.monotonic()
        r = _run(argv, env, root, timeout=600)
        steps[label] = time.monotonic() - t
        assert r.returncode == 0, f"{label}:\n{r.stdout[-2000:]}{r.stderr[-3000:]}"
        if "-r" in argv:  # everything train.txt asks for is among the shared distributions
            assert "Successfully installed" not in r.stdout, r.stdout[-2000:]
    print("training profile set up in " + ", ".join(f"{k} {v:.1f} s" for k, v in steps.items()))
    return bin_dir, env, time.monotonic() - t0


@pytest.mark.slow
def test_training_profile_runs_the_training_cli_without_ros(train_venv, tmp_path):
    bin_dir, env, install_s = train_venv
    py, cli = str(bin_dir / "python"), str(bin_dir / "gr00t-rlhf")
    print(f"training profile installed in {install_s:.1f} s")

    for module in ("rclpy", "rosbags", "mujoco", "sensor_msgs"):
        r = _run([py, "-c", f"import {module}"], env, tmp_path)
        assert r.returncode != 0 and "ModuleNotFoundError" in r.stderr, f"{module} is importable in the training profile"

    r = _run([cli, "--help"], env, tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    for command in ("model", "dataset", "drive", "bag2lerobot"):
        assert command in r.stdout, r.stdout

    r = _run([cli, "model", "info", "tiny"], env, tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "parameters" in r.stdout.lower(), r.stdout

    # a tiny dataset written by the training profile's own writer, then validated by its CLI
    ds = tmp_path / "ds"
    make = (
        "import sys, numpy as np\n"
        "from gr00t_rlhf_train.data.writer import DatasetWriter\n"
        "from gr00t_rlhf_train.feedback import BINARY\n"
        "w = DatasetWriter.create(sys.argv[1], fps=10.0, image_size=(48, 64), vocabulary=BINARY)\n"
        "for e in range(2):\n"
        "    ep = w.start_episode('Find Blue cube')\n"
        "    for k in range(6):\n"
        "        img = np.full((48, 64, 3), 20 * k + 40 * e, np.uint8)\n"
        "        ep.add_frame(img, [0.1 * k, -0.1 * k, 9.8], [0.5, -0.5], k / 10.0, k % 2)\n"
        "    ep.commit()\n"
        "w.close()\n"
    )
    r = _run([py, "-c", make, str(ds)], env, tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    r = _run([cli, "dataset", "validate", str(ds)], env, tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]

    # the ROS commands say which profile/package is missing, in one line, no traceback
    r = _run([cli, "bag2lerobot", str(tmp_path / "some_bag"), str(tmp_path / "out"), "--no-progress"], env, tmp_path)
    err = r.stderr.strip()
    assert r.returncode == 1 and "Traceback" not in err and len(err.splitlines()) == 1, err
    assert "rosbags" in err and "requirements" in err, err
    r = _run([cli, "drive", "--duration", "1"], env, tmp_path)
    err = r.stderr.strip()
    assert r.returncode == 2 and "Traceback" not in err and len(err.splitlines()) == 1, err
    assert "rclpy" in err and "mujoco" in err and "requirements" in err, err
