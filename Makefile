# The two commands of the README. Both set the machine up first (infra/setup.sh).
VENV ?= .venv

.PHONY: setup setup-test demo test unit
setup:
	@SOUNDSCAPE_EXTRAS=dev,birdnet bash infra/setup.sh

setup-test:          ## tests also need the PyTorch export tools (train) and Docker
	@SOUNDSCAPE_EXTRAS=dev,train,birdnet bash infra/setup.sh --docker

demo: setup          ## the main job, end to end
	$(VENV)/bin/soundscape demo

# Every test against local Kafka and PostgreSQL processes, then the integration tests again
# against the same services in containers started by testcontainers (images built here),
# with the docker-compose.yml stack test (marker `compose`), which needs the engine too.
# The BirdNET tests (marker `birdnet`: a 90 s import, then real recordings through Kafka,
# the worker and the sink), the malformed-input test (marker `input_only`) and the local
# cluster's own security tests (marker `local_only`) run in the first pass only; the
# second pass changes the backend, not the model path, input handling or the local files.
test: setup-test
	$(VENV)/bin/python -m pytest -m "not compose"
	SOUNDSCAPE_TEST_BACKEND=containers SOUNDSCAPE_IMAGES__PULL=never $(VENV)/bin/python -m pytest -m "integration and not birdnet and not input_only and not local_only"

unit: setup          ## only the tests that need no service
	$(VENV)/bin/python -m pytest -m unit
