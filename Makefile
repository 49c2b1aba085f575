# The two commands of the README. Both set the machine up first (infra/setup.sh).
VENV ?= .venv

.PHONY: setup demo test unit
setup:
	@bash infra/setup.sh

demo: setup          ## the main job, end to end
	$(VENV)/bin/soundscape demo

test: setup          ## every test, unit and integration, against real Kafka and PostgreSQL
	$(VENV)/bin/python -m pytest

unit: setup          ## only the tests that need no service
	$(VENV)/bin/python -m pytest -m unit
