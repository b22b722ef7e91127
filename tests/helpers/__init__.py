"""Helpers shared by tests in more than one folder (``tests/conftest.py`` puts ``tests/`` on the path)."""
