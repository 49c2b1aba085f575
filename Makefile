# The two commands of the README. Both set the machine up first (infra/setup.sh).
VENV ?= .venv

.PHONY: setup setup-test demo test unit
setup:
	@SOUNDSCAPE_EXTRAS=dev,birdnet bash infra/setup.sh

setup-test:          ## tests also need the PyTorch export tools (train), Docker, a browser, MQTT
	@SOUNDSCAPE_EXTRAS=dev,train,birdnet bash infra/setup.sh --docker --browser --mqtt

demo: setup          ## the main job, end to end
	$(VENV)/bin/soundscape demo

# Every test once. The tests whose subject is the conversation with the brokers and the
# database over the network (marker `network`, given by tests/conftest.py's NETWORK_TESTS:
# the compose stack, which needs the engine too, the Kafka round trip, the worker's
# transactions, the sink room's tests and the station's restarts) run against the
# services in containers started by testcontainers (images built here); the rest against
# local Kafka and PostgreSQL processes, since it runs the same client code against the
# same broker and server versions whichever backend serves it. `pytest` alone runs
# everything on local processes. --durations prints the slowest tests, to keep the whole
# run short.
test: setup-test
	$(VENV)/bin/python -m pytest -m "not compose and not network" --durations=25
	SOUNDSCAPE_TEST_BACKEND=containers SOUNDSCAPE_IMAGES__PULL=never $(VENV)/bin/python -m pytest -m network --durations=15

unit: setup          ## only the tests that need no service
	$(VENV)/bin/python -m pytest -m unit
