# Daily commands; ./dev does the set-up (apt packages, virtualenv, project install).
.PHONY: setup test lint run bench
setup:
	./dev setup
test:
	./dev test
lint:
	./dev lint
run:
	./dev run
bench:
	./dev setup && for b in bench/*.py; do .venv/bin/python $$b; done
