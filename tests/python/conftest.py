import os

import numpy as np
import pytest

# Every test runs in the portable numerics tier, whatever the caller's environment says: the default (native) is not
# bitwise the oracle on a CPU with AMX-BF16, and a test's outcome must not depend on the machine. moefuse reads the
# variable at its first layer or operator call, after this. The tests of the native tier ask for it explicitly
# (numerics="native"; test_numerics.py).
os.environ["MOEFUSE_NUMERICS"] = "portable"


@pytest.fixture
def rng():
    return np.random.default_rng(20260)
