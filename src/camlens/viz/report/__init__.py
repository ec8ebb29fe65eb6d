"""The HTML report of a run folder: ``camlens report run/`` -> ``run/report/index.html``.

``build`` (write_report, ReportStats), ``runfolder`` (reading the run folder contract),
``pictures`` (thumbnails and map chunks), ``serve`` (a localhost server), ``assets`` (the page,
its script and style sheet: plain files shipped with camlens, no network).
"""

from .build import ReportStats, write_report
from .runfolder import RunFolder, read_run_folder

__all__ = ["write_report", "ReportStats", "RunFolder", "read_run_folder"]
