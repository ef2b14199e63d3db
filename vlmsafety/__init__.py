"""vlmsafety: layer-wise and cross-modal safety experiments on open vision-language models."""

import logging
import os

__version__ = "0.1.0"

# Idle OpenMP threads sleep instead of spinning. Read once, when torch loads OpenMP, so it is set here,
# before any vlmsafety module imports torch (an explicit OMP_WAIT_POLICY in the environment wins).
# On cores shared with other processes, spinning threads made decoding 5-8x slower (docs/PERFORMANCE.md).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# bitsandbytes (imported by peft) warns on CPUs with AVX512-BF16 that an optional kernel, fetched from the
# hub by the `kernels` package, is missing; it then uses its own CPU 4-bit code. Only that line is dropped.
logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(lambda record: "kernels-community" not in record.getMessage())
