# The two commands of the README: `make demo` runs sotrag, `make test` runs the tests. Each installs first.
.PHONY: install demo test

install:
	bash scripts/install.sh

# The web UI, REST API and OpenAI endpoint on http://127.0.0.1:8000, over a demo index of this project's own
# README and docs/ (built on first run). Pass options with ARGS, e.g. make demo ARGS="--model /models/qwen --port 9000".
demo: install
	.venv/bin/sotrag serve $(ARGS)

test:
	bash scripts/test.sh
