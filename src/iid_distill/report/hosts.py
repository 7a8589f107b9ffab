"""The table no paper has: IID's two constraints on every distribution-matching host (DM, IDM, DataDAM, M3D), each
host alone, with CC, with CM and with both, from the runs' records."""

from __future__ import annotations

from typing import Any, Mapping

import pandas as pd

from iid_distill.names import METHOD_LABELS
from iid_distill.report.cells import DEFAULT_ARCH, RenderedTable, render_method_table

TABLE_ID = "table_hosts"
DEFAULT_CELL = ("cifar10", 10)  # the setting the table is produced at when no host run exists yet


def host_rows() -> list[dict[str, Any]]:
    """One row per registered host and constraint set, in the registry's order (hosts without labels are left out)."""
    from iid_distill.distill import HOSTS
    from iid_distill.distill.settings import CONSTRAINT_SUFFIXES

    ids = [f"{host}{suffix}" for host in HOSTS for suffix in CONSTRAINT_SUFFIXES.values()]
    return [{"label": METHOD_LABELS[method], "method": method, "acc": {}} for method in ids if method in METHOD_LABELS]


def render_hosts_table(df: pd.DataFrame, data_labels: Mapping[str, str] | None = None, arch: str = DEFAULT_ARCH) -> RenderedTable:
    """Every (dataset, IPC) that holds a run of a host beyond DM and IDM (else CIFAR-10 IPC 10), one row per host and
    constraint set: ours only, no published numbers exist."""
    rows = host_rows()
    beyond = [row["method"] for row in rows if not row["method"].startswith(("dm", "idm"))]
    ran = df.loc[df["method"].isin(beyond) & (df["arch"] == arch)] if len(df) else df
    datasets = sorted({str(value) for value in ran["dataset"]}) if len(ran) else [DEFAULT_CELL[0]]
    ipcs = sorted({int(value) for value in ran["ipc"]}) if len(ran) else [DEFAULT_CELL[1]]
    return render_method_table(df, rows, datasets, ipcs, table_id=TABLE_ID, arch=arch, data_labels=data_labels,
                               title="IID across hosts: each host alone, with CC, with CM and with both (this project's table; "
                                     "no published numbers)")
