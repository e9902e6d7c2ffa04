"""Tests run with 64-bit JAX enabled (per test, so the package's doctests see JAX's defaults).

Keras 3 reads ``KERAS_BACKEND`` once, when it is first imported, and importing TensorFlow can
import it: it is set here, before any test module, so Keras runs on JAX in every worker
whichever test file is collected first. Only the Keras tests use Keras.
"""

import os

os.environ["KERAS_BACKEND"] = "jax"

import pytest  # noqa: E402

from helpers import enable_x64  # noqa: E402


@pytest.fixture(autouse=True)
def _enable_x64():
  with enable_x64(True):
    yield
