"""Where the package's shared files (config/, launch/) live in each kind of install.

Order: the ament index (colcon install or a sourced ROS workspace), then ``<prefix>/share`` of a
pip install, then the source checkout (editable install, tests).
"""
from __future__ import annotations

import sys
from pathlib import Path

PACKAGE = "gr00t_rlhf_ros"
_SOURCE_ROOT = Path(__file__).resolve().parents[2]


def share_dir() -> Path:
    """The directory holding ``config/`` and ``launch/`` for this install."""
    candidates = []
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        try:
            candidates.append(Path(get_package_share_directory(PACKAGE)))
        except (PackageNotFoundError, ValueError, LookupError, OSError):  # not in an ament prefix
            pass
    except ImportError:
        pass
    candidates += [_SOURCE_ROOT, Path(sys.prefix) / "share" / PACKAGE]
    for c in candidates:
        if (c / "config" / "contract.yaml").is_file():
            return c
    raise FileNotFoundError(
        f"cannot find {PACKAGE}'s config/contract.yaml; looked in: " + ", ".join(map(str, candidates))
    )


def config_path(name: str) -> Path:
    """Path of ``config/<name>`` (e.g. ``sim.yaml``)."""
    p = share_dir() / "config" / name
    if not p.is_file():
        raise FileNotFoundError(f"config file not found: {p}")
    return p
