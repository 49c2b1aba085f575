"""numpy's BLAS threads, limited where the work is already split across threads.

The FFT front-end's mel matmuls are small ([313, 1025] x [1025, 64] per chunk): OpenBLAS
would start a thread per core for each and keep them spinning between calls, burning the
cores that the other chunks' threads (lanes, front-end threads, a station's capture)
need. Measured on 2 cores (full-size int8 bundle, two lanes, 32 chunks): 17.4 and 15.9
chunks/s with OpenBLAS's default threads, 22.1 and 20.7 with one. The limit is for the
whole process: OpenBLAS has one thread pool.
"""

from __future__ import annotations

from soundscape.logs import get_logger

log = get_logger(__name__)


def limit_blas_threads(threads: int = 1) -> str:
    """Limit numpy's BLAS to `threads`; returns what was set, for logs and benchmarks."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        log.warning("threadpoolctl is missing: numpy's BLAS may use (and spin) every core",
                    hint="install the serve or edge extra: pip install 'soundscape[serve]'")
        return "unlimited (no threadpoolctl)"
    threadpool_limits(limits=threads, user_api="blas")
    return str(threads)
