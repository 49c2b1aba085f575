# The two commands of the README. Both set the machine up first (infra/setup.sh).
VENV ?= .venv

.PHONY: setup setup-test demo test unit
setup:
	@SOUNDSCAPE_EXTRAS=dev,birdnet bash infra/setup.sh

setup-test:          ## tests also need the PyTorch export tools (train), Docker, a browser, MQTT
	@SOUNDSCAPE_EXTRAS=dev,train,birdnet bash infra/setup.sh --docker --browser --mqtt

demo: setup          ## the main job, end to end
	$(VENV)/bin/soundscape demo

# Every test against local Kafka and PostgreSQL processes, then, against the same services
# in containers started by testcontainers (images built here), the tests whose subject is
# the conversation with the brokers and the database over the network: the compose stack
# (marker `compose`, which needs the engine too), the Kafka round trip, the worker's
# transactions and the sink room's tests (writes, migrations, partitions, outages, the
# clip keeper, the notifier, the registry), and the station's restarts. The rest changes
# nothing when only the backend changes (the same client code, the same broker and server
# versions) and runs in the local pass only. --durations prints the slowest tests, to keep
# the whole run short.
CONTAINERS_TESTS = tests/integration/infra/test_compose.py \
	tests/integration/app/test_kafka_roundtrip.py tests/integration/processors/test_worker.py \
	tests/integration/sinks tests/integration/producers/test_station_restarts.py
test: setup-test
	$(VENV)/bin/python -m pytest -m "not compose" --durations=25
	SOUNDSCAPE_TEST_BACKEND=containers SOUNDSCAPE_IMAGES__PULL=never $(VENV)/bin/python -m pytest -m "integration and not local_only and not browser" $(CONTAINERS_TESTS) --durations=15

unit: setup          ## only the tests that need no service
	$(VENV)/bin/python -m pytest -m unit
