"""gr00t_rlhf_train never imports ROS: it must run on a GPU workstation without ROS."""
import pkgutil
import subprocess
import sys

import gr00t_rlhf_train

ROS_MODULES = ("rclpy", "rosidl_runtime_py", "sensor_msgs", "std_msgs", "std_srvs", "geometry_msgs",
               "visualization_msgs", "launch", "launch_ros", "gr00t_rlhf_ros")


def test_train_package_imports_with_ros_absent():
    modules = [m.name for m in pkgutil.walk_packages(gr00t_rlhf_train.__path__, "gr00t_rlhf_train.")]
    code = (
        "import sys, importlib\n"
        f"for m in {ROS_MODULES!r}: sys.modules[m] = None  # any import of them raises ImportError\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"bad = [m for m in sys.modules if m.split('.')[0] in {ROS_MODULES!r} and sys.modules[m] is not None]\n"
        "assert not bad, bad\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]


def test_training_from_a_frame_cache_needs_no_video_decoder():
    """A GPU machine may have no PyAV: the cache, the samples, the model, the stages and eval load without it."""
    modules = ["gr00t_rlhf_train.data.cache", "gr00t_rlhf_train.data.samples", "gr00t_rlhf_train.model",
               "gr00t_rlhf_train.stages.loop", "gr00t_rlhf_train.stages.sft", "gr00t_rlhf_train.stages.reward",
               "gr00t_rlhf_train.eval.metrics", "gr00t_rlhf_train.eval.reward", "gr00t_rlhf_train.eval.policy"]
    code = (
        "import sys, importlib, importlib.util\n"
        "sys.modules['av'] = None  # any import of PyAV raises ImportError\n"
        f"for m in {modules!r}:\n"
        "    if importlib.util.find_spec(m.rsplit('.', 1)[0]) is not None and importlib.util.find_spec(m) is not None:\n"
        "        importlib.import_module(m)\n"
        "from gr00t_rlhf_train.data import FrameCache  # noqa: F401\n"
        "from gr00t_rlhf_train.cli import main\n"
        "for argv in (['train', 'reward', '--help'], ['train', 'sft', '--help'], ['eval', 'reward', '--help']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit as e:\n"
        "        assert e.code == 0, (argv, e.code)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
