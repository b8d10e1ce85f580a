# The two commands of the README. Each sets up what it needs (scripts/setup.sh is idempotent).
.PHONY: setup drive test bench

VENV ?= .venv
DRIVE_ARGS ?=

setup:
	@bash scripts/setup.sh

# Main job on the embedded default: the GR00T policy drives the MuJoCo simulated robot over real
# ROS 2 topics while the reward model judges it live. The first run makes a tiny demo policy and
# reward model from simulated expert demonstrations (a few minutes, cached in
# ~/.cache/gr00t-rlhf/demo-models); each run writes runs/<time>/drive.mp4 and ends with a
# one-line summary. Ctrl-C stops everything. The scripted expert: DRIVE_ARGS="--driver expert".
drive: setup
	$(VENV)/bin/gr00t-rlhf drive --sim $(DRIVE_ARGS)

# The whole test suite (what CI runs). pytest's "no tests collected" (exit 5) fails too.
test: setup
	MUJOCO_GL=osmesa $(VENV)/bin/python -m pytest $(PYTEST_ARGS)

bench: setup
	MUJOCO_GL=osmesa $(VENV)/bin/python bench/bench_sim.py
