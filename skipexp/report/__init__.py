"""The ablation report and figures of runs, read from run folders only (``skipexp-report``, ``skipexp-plot``).

``collect`` reads and classifies run folders, ``tables`` makes the ablation
table, ``figures`` draws every figure (gradient-flow heat maps included),
``hparams`` writes TensorBoard HParams sessions, ``ablation`` writes the whole
report and ``cli`` holds the console scripts. Importing it loads neither torch
nor the network (skipexp.models, skipexp.runtime), so reading a sweep is cheap.
"""

from skipexp.report.ablation import Report, write_report
from skipexp.report.cli import plot_main, report_main
from skipexp.report.collect import LeftOut, Run, Sweep, collect_runs
from skipexp.report.tables import COLUMNS, VARIANT_ORDER, ablation_rows, markdown_table

main = report_main  # ``skipexp-report``

__all__ = ["COLUMNS", "VARIANT_ORDER", "LeftOut", "Report", "Run", "Sweep", "ablation_rows", "collect_runs", "main",
           "markdown_table", "plot_main", "report_main", "write_report"]
