"""ament_python build of gr00t_rlhf_ros (also installs with plain pip)."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "gr00t_rlhf_ros"

# executable = node name = module gr00t_rlhf_ros.nodes.<name> = params-file root key
NODES = ["sim_node", "expert_node", "recorder_node", "feedback_node", "policy_node", "reward_node", "sim_human_node"]

setup(
    name=PACKAGE,
    version="0.1.0",
    package_dir={"": "src"},
    packages=find_packages("src"),
    package_data={PACKAGE: ["experiment/intro.md"]},   # read by `experiment rlhf --intro`
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.rviz")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="gr00t_rlhf_ros maintainers",
    maintainer_email="maintainers@gr00t-rlhf.dev",
    description="RLHF for a GR00T N1-driven wheeled robot on ROS 2",
    license="Apache-2.0",
    python_requires=">=3.10",
    entry_points={
        "console_scripts": [f"{n}={PACKAGE}.nodes.{n}:main" for n in NODES]
        + [
            "gr00t-rlhf=gr00t_rlhf_ros.cli:main",
            "bag_to_lerobot=gr00t_rlhf_ros.bag_to_lerobot:main",
        ],
    },
)
