"""The MuJoCo simulation of the robot and its arena (plain Python, no ROS).

Headless machines have no display for MuJoCo's default GLFW backend: unless ``MUJOCO_GL`` is set
(or a display exists), choose OSMesa software rendering before anything imports ``mujoco``.
"""
import os

if not os.environ.get("MUJOCO_GL") and not os.environ.get("DISPLAY"):
    os.environ["MUJOCO_GL"] = "osmesa"
