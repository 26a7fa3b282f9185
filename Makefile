# The two commands of the README: `make demo` runs sotrag, `make test` runs the tests. Each installs first.
.PHONY: install demo test

install:
	bash scripts/install.sh

demo: install
	.venv/bin/sotrag ask "What are good ways to sleep better?"

test:
	bash scripts/test.sh
