# The two commands of the README. Both set the machine up first (infra/setup.sh).
VENV ?= .venv

.PHONY: setup setup-test demo test unit
setup:
	@SOUNDSCAPE_EXTRAS=dev,birdnet bash infra/setup.sh

setup-test:          ## tests also need the PyTorch export tools (train), Docker, a browser, MQTT
	@SOUNDSCAPE_EXTRAS=dev,train,birdnet bash infra/setup.sh --docker --browser --mqtt

demo: setup          ## the main job, end to end
	$(VENV)/bin/soundscape demo

# Every test against local Kafka and PostgreSQL processes, then the integration tests again
# against the same services in containers started by testcontainers (images built here),
# with the docker-compose.yml stack test (marker `compose`), which needs the engine too.
# The second pass changes the backend, not the model path, input handling or the local
# files, so it runs the tests that reach Kafka or PostgreSQL over the network: not the
# BirdNET tests (marker `birdnet`), the malformed-input test (`input_only`), the local
# cluster's own security tests (`local_only`), the model tests (tests/integration/models:
# training, export and ONNX Runtime, no service), the Grafana panel SQL (the same server
# version either way) or the demo (the Kafka round trip covers its path). --durations
# prints the slowest tests, to keep the whole run well under 30 minutes.
CONTAINERS_SKIP = --ignore=tests/integration/models --ignore=tests/integration/infra/grafana \
	--ignore=tests/integration/app/test_demo.py
test: setup-test
	$(VENV)/bin/python -m pytest -m "not compose" --durations=25
	SOUNDSCAPE_TEST_BACKEND=containers SOUNDSCAPE_IMAGES__PULL=never $(VENV)/bin/python -m pytest -m "integration and not birdnet and not input_only and not local_only and not browser" $(CONTAINERS_SKIP) --durations=15

unit: setup          ## only the tests that need no service
	$(VENV)/bin/python -m pytest -m unit
