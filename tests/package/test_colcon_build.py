"""The package builds with colcon as on a ROS 2 install, with the ament install layout."""
import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PACKAGE_FILES = ["package.xml", "setup.py", "setup.cfg", "resource", "src", "launch", "config"]


def _console_scripts() -> list[str]:
    tree = ast.parse((REPO / "setup.py").read_text())
    nodes = next(n.value for n in ast.walk(tree) if isinstance(n, ast.Assign)
                 and getattr(n.targets[0], "id", None) == "NODES")
    return [ast.literal_eval(e) for e in nodes.elts] + ["gr00t-rlhf", "bag_to_lerobot"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    if not (BIN / "colcon").exists():
        pytest.skip("colcon is not installed (colcon-common-extensions)")
    ws = tmp_path_factory.mktemp("ws")
    pkg = ws / "src" / "gr00t_rlhf_ros"
    pkg.mkdir(parents=True)
    for name in PACKAGE_FILES:
        src = REPO / name
        (shutil.copytree(src, pkg / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
         if src.is_dir() else shutil.copy2(src, pkg / name))
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}")
    listing = subprocess.run(["colcon", "list"], cwd=ws, env=env, capture_output=True, text=True)
    build = subprocess.run(["colcon", "build", "--event-handlers", "console_direct-"], cwd=ws, env=env,
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    return ws, listing.stdout


def test_colcon_sees_an_ament_python_package(workspace):
    _, listing = workspace
    assert "gr00t_rlhf_ros" in listing and "(ros.ament_python)" in listing, listing


def test_install_layout(workspace):
    ws, _ = workspace
    prefix = ws / "install" / "gr00t_rlhf_ros"
    for exe in _console_scripts():
        assert (prefix / "lib" / "gr00t_rlhf_ros" / exe).is_file(), f"missing executable {exe}"
    share = prefix / "share" / "gr00t_rlhf_ros"
    assert (share / "package.xml").is_file()
    assert (share / "launch" / "drive.launch.py").is_file()
    assert (share / "config" / "contract.yaml").is_file()
    assert (prefix / "share" / "ament_index" / "resource_index" / "packages" / "gr00t_rlhf_ros").is_file()


def test_installed_package_finds_its_share_dir_through_the_ament_index(workspace):
    ws, _ = workspace
    prefix = ws / "install" / "gr00t_rlhf_ros"
    site = next(prefix.glob("lib/python3*/site-packages"))
    env = dict(os.environ, AMENT_PREFIX_PATH=str(prefix), PYTHONPATH=str(site))
    code = "from gr00t_rlhf_ros.paths import share_dir; import gr00t_rlhf_ros; print(share_dir()); print(gr00t_rlhf_ros.__file__)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ws)
    assert out.returncode == 0, out.stderr
    share, module = out.stdout.split()
    assert Path(share) == prefix / "share" / "gr00t_rlhf_ros"
    assert module.startswith(str(site))
    help_out = subprocess.run([str(prefix / "lib" / "gr00t_rlhf_ros" / "gr00t-rlhf"), "--help"], env=env,
                              capture_output=True, text=True, cwd=ws)
    assert help_out.returncode == 0 and "drive" in help_out.stdout, help_out.stderr
