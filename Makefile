# One command sets up and tests (make test); one runs the main job (make demo).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# DDS discovery never leaves this machine (Humble spells it ROS_LOCALHOST_ONLY=1).
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
# The ROS wheels' CMake config lives in the venv; colcon finds it through these.
ROS_ENV := source $(VENV)/bin/activate && export CMAKE_PREFIX_PATH=$$VIRTUAL_ENV AMENT_PREFIX_PATH=$$VIRTUAL_ENV
SOURCES := $(shell find sam2_ros sam2_ros_interfaces -type f -not -path '*/__pycache__/*' -not -path '*/.pytest_cache/*' -not -path '*/.hypothesis/*')
PYTEST_ARGS ?=
# Tests run in two processes side by side (pytest-xdist; 0: in this one), a file's tests in one of
# them, each process's torch on one thread: much of the suite waits on ROS and on processes it starts,
# and two torch threads per process on two cores spin against each other (33 minutes -> 17 on 2 cores).
TEST_WORKERS ?= 2

.PHONY: test demo setup build lint clean

test: build
	$(ROS_ENV) && source install/setup.bash && cd sam2_ros && OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} \
		python -m pytest test -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

demo: build
	$(ROS_ENV) && source install/setup.bash && bash scripts/demo.sh

setup: $(VENV)/.installed

# pip never reaches for another torch: the versions are pinned in requirements/torch.txt.
# sam2 builds against the torch already installed (no isolated build env with its own torch).
$(VENV)/.installed: requirements/*.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip wheel 'setuptools<80'
	$(PY) -m pip install -q -r requirements/torch.txt
	SAM2_BUILD_CUDA=0 $(PY) -m pip install -q --no-build-isolation -r requirements/sam2.txt
	$(PY) -m pip install -q -r requirements/dev.txt
	$(PY) -m pip install -q --no-deps --upgrade --target $(VENV)/reference/edgetam -r requirements/edgetam_reference.txt
	# ros-rosidl-parser pulls lark-parser 0.12, whose `lark` module overwrites lark 1.x
	$(PY) -m pip install -q --force-reinstall --no-deps -r requirements/lark.txt
	touch $@

build: install/.built

install/.built: $(VENV)/.installed $(SOURCES)
	bash scripts/fix_ros_wheel_paths.sh $(PY)
	$(ROS_ENV) && colcon build --symlink-install --event-handlers console_cohesion- summary+
	touch $@

lint: setup
	$(PY) -m ruff check sam2_ros --config ruff.toml

clean:
	rm -rf build install log
