"""Test-suite wide settings; area fixtures live in each area's conftest."""

import atexit
import os
import shutil
import tempfile

# The development secret lives in the user's data directory: the suite (and the lcx
# processes it starts, which inherit the environment) gets a private one.
os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="lcx-test-data-")
atexit.register(shutil.rmtree, os.environ["XDG_DATA_HOME"], ignore_errors=True)
