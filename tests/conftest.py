"""Root conftest: its presence puts ``tests/`` on ``sys.path`` (pytest's prepend import mode), so
test modules in every folder can import the shared ``helpers`` package."""

import hypothesis

# The machine CI runs on is shared and noisy: property tests judge results, never wall time.
hypothesis.settings.register_profile("shared-machine", deadline=None)
hypothesis.settings.load_profile("shared-machine")
