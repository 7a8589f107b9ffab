"""Result aggregation and the report: per-seed evaluation records -> one runs table -> tables and figures beside the
paper's numbers.

``records`` (evaluation records -> the runs table), ``inputs`` (sweep tables, accuracy-vs-iteration curves,
continual-learning records), ``cells`` (statistics, cells, Tables 1, 2 and 6, the paper's numbers), ``grids``
(Tables 3, 4, 5 and 7), ``figures`` (figure style, the bar figures), ``plots`` (Figures 4-7, imported on use) and
``render`` (``render_report``: everything at once, the runs summary, summary.json). Data flows one way, in that order.

Conventions: std is the population std (ddof=0, numpy's default, as the DM code's ``np.std``); whole-dataset runs
(method ``whole``) carry ipc 0 (the whole training set, not images per class); every file is written atomically
and byte-reproducibly (sorted rows, fixed float formatting, fixed figure metadata).
"""

from iid_distill.names import METHOD_LABELS, canonical_method, method_label
from iid_distill.report.cells import (
    RenderedTable,
    format_diff,
    load_paper_numbers,
    mean_std,
    render_table1,
    render_table2,
    render_table6,
    seed_statistics,
)
from iid_distill.report.figures import FIGURE_RC, method_bar_data, plot_method_bars, save_figure
from iid_distill.report.grids import cross_arch_drop, render_table3, render_table4, render_table5, render_table7, table7_ipcs
from iid_distill.report.inputs import (
    CONTINUAL_COLUMNS,
    CONVERGENCE_COLUMNS,
    SWEEP_COLUMNS,
    collect_sweep_records,
    read_continual,
    read_convergence,
    read_sweep_tables,
    write_sweep_table,
)
from iid_distill.report.records import (
    DEFAULT_ARCH,
    DEFAULT_PAPER_YAML,
    RUN_COLUMNS,
    STD_DDOF,
    ReportError,
    check_complete,
    collect_records,
    dataset_label,
    expected_seed_keys,
    read_runs_table,
    record_to_row,
    sort_runs,
    write_runs_table,
)
from iid_distill.report.render import (
    compression_figure_wanted,
    convergence_statistics,
    figure_settings,
    outcome_lines,
    render_convergence_table,
    render_report,
    render_runs_summary,
)

__all__ = [name for name in dir() if not name.startswith("_") and name not in {"annotations"}]
