"""A stand-in for Synapse, for hsops' tests (see testdata/fakesynapse/README.md)."""

import os

__version__ = os.environ.get("FAKE_SYNAPSE_VERSION", "1.99.0")
