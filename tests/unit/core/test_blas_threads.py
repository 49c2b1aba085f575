"""limit_blas_threads: numpy's BLAS pool really is limited (threadpoolctl reads it back)."""

from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from soundscape.blas_threads import limit_blas_threads


def blas_threads() -> set[int]:
    return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}


def test_limits_numpys_blas_for_the_process() -> None:
    np.ones((4, 4)) @ np.ones((4, 4))  # BLAS loaded
    assert blas_threads(), "numpy's BLAS was not found"
    with threadpool_limits(limits=None):  # restored afterwards for the other tests
        assert limit_blas_threads(1) == "1"
        assert blas_threads() == {1}
