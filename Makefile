# The two commands of the README. Each sets up what it needs (scripts/setup.sh is idempotent).
.PHONY: setup drive test bench

VENV ?= .venv
DRIVE_ARGS ?=

setup:
	@bash scripts/setup.sh

# Main job on the embedded default: the MuJoCo simulated robot driven by the scripted expert
# over real ROS 2 topics. Ctrl-C stops everything.
drive: setup
	$(VENV)/bin/gr00t-rlhf drive --sim $(DRIVE_ARGS)

# The whole test suite (what CI runs). pytest's "no tests collected" (exit 5) fails too.
test: setup
	MUJOCO_GL=osmesa $(VENV)/bin/python -m pytest $(PYTEST_ARGS)

bench: setup
	MUJOCO_GL=osmesa $(VENV)/bin/python bench/bench_sim.py
