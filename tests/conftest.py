"""Root conftest: its presence puts ``tests/`` on ``sys.path`` (pytest's prepend import mode), so
test modules in every folder can import the shared ``helpers`` package."""
