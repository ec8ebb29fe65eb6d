"""camlens.metrics.localization and metrics._common against references: hand-computed boxes,
IoUs and components, brute-force loops, scipy and torchvision.

Each test was written against mutants that survived the rest of the suite
(``python tools/mutate.py metrics/localization``), but checks the documented behaviour, not the
mutant.
"""

from __future__ import annotations
