"""The benchmarks: each module is one benchmark, run from the repository root as ``python -m bench.<name>``.

``bench.common`` holds what they share; ``bench.docs_tables`` turns their result files
(``bench/results/*.json``) into the numbers of the docs.
"""

import os

# Before any benchmark imports transformers, great_expectations or zenml: they read these at import
# time, and a benchmark must neither reach the Hub nor send analytics.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("ZENML_ANALYTICS_OPT_IN", "false")
