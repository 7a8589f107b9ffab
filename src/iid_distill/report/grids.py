"""Tables with free column headers: 3 and 4 (cross-architecture), 5 (beta sweep) and 7 (compression)."""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

from iid_distill.names import METHOD_LABELS, WHOLE_METHOD, canonical_method, method_label, method_rank
from iid_distill.report.cells import (
    Cell,
    RenderedTable,
    _budget_text,
    _fmt,
    _legend_text,
    _make_cell,
    _paper_table,
    _protocol_text,
    _seed_count_text,
    format_diff,
    latex_cell,
    latex_caption,
    latex_escape,
    markdown_cell,
)
from iid_distill.report.records import (
    DAGGER_MD,
    DEFAULT_ARCH,
    MISSING,
    QUOTED_NOTE,
    ReportError,
    WHOLE_IPC,
    _as_int,
    dataset_label,
)
from iid_distill.report.tables import latex_table, latex_tabular, markdown_table


def _grid_markdown(title: str, header: str, corner: str, columns: Sequence[str], row_labels: Sequence[str],
                   rows: Sequence[Sequence[str]], notes: Sequence[str]) -> str:
    table = markdown_table([corner, *columns], [[label, *texts] for label, texts in zip(row_labels, rows)])
    return "\n".join([f"## {title}", "", header, "", table, "", *notes]) + "\n"


def _grid_latex(table_id: str, title: str, header: str, corner: str, columns: Sequence[str], row_labels: Sequence[str],
                rows: Sequence[Sequence[str]], notes: Sequence[str], rule_before: Sequence[int] = ()) -> str:
    """Like the Markdown table; ``corner``, ``columns``, labels, cells and notes come LaTeX-ready (title/header are escaped)."""
    tabular = latex_tabular([corner, *columns], [[label, *texts] for label, texts in zip(row_labels, rows)], rule_before=rule_before)
    return latex_table(table_id, title, latex_caption(title, header), tabular, " ".join(notes))


def _quoted_notes(any_quoted: bool, latex: bool) -> list[str]:
    if not any_quoted:
        return []
    return [f"$^\\dagger$ {QUOTED_NOTE}" if latex else f"{DAGGER_MD} {QUOTED_NOTE}"]


def _row_labels(labels: Sequence[str], quoted: Sequence[bool]) -> tuple[list[str], list[str]]:
    """Markdown and LaTeX row labels, quoted rows marked with the dagger."""
    md = [f"{label}{DAGGER_MD if q else ''}" for label, q in zip(labels, quoted)]
    tex = [latex_escape(label) + ("$^\\dagger$" if q else "") for label, q in zip(labels, quoted)]
    return md, tex


def _max_n(cells: Iterable[Cell]) -> int:
    return max((cell.n for cell in cells), default=0)


def _group_map(runs: pd.DataFrame, keys: Sequence[str]) -> dict[tuple, pd.DataFrame]:
    return {key if isinstance(key, tuple) else (key,): group for key, group in runs.groupby(list(keys), sort=True)}


def cross_arch_drop(means: Mapping[str, float | None], reference: str = DEFAULT_ARCH) -> tuple[float, str] | None:
    """(``reference`` mean minus the lowest mean of the other archs, that arch); None without both.

    Ties go to the arch first in alphabetical order, so the named arch is deterministic.
    """
    others = {arch: mean for arch, mean in means.items() if arch != reference and mean is not None}
    if means.get(reference) is None or not others:
        return None
    worst = min(sorted(others), key=lambda arch: others[arch])
    return float(means[reference]) - float(others[worst]), worst


def _drop_texts(ours: tuple[float, str] | None, paper: tuple[float, str] | None, quoted: bool) -> tuple[str, str]:
    """Markdown and LaTeX "ours (arch) / paper (arch) / diff" for the drop column; the paper's drop only for quoted rows."""
    def part(drop, latex):
        if drop is None:
            return "--" if latex else MISSING
        value, arch = drop
        return f"${_fmt(value)}$ ({arch})" if latex else f"{_fmt(value)} ({arch})"

    if quoted:
        return part(paper, False), part(paper, True)
    if ours is None and paper is None:
        return MISSING, "--"
    diff = format_diff(ours[0], paper[0]) if ours is not None and paper is not None else None
    markdown = f"{part(ours, False)} / {part(paper, False)} / {diff or MISSING}"
    second = part(paper, True) + (f" (${diff}$)" if diff else "")
    return markdown, f"\\shortstack{{{part(ours, True)}\\\\{{\\tiny {second}}}}}"


def per_arch_drops(cells: Sequence[Cell], reference: str = DEFAULT_ARCH) -> dict[str, tuple[float | None, float | None]]:
    """Per other architecture: (ours, paper) drop from ``reference``, i.e. its mean minus the architecture's; None where
    either mean is absent."""
    by_arch = {cell.column: cell for cell in cells}
    base = by_arch.get(reference)

    def drop(a, b):
        return None if a is None or b is None else float(a) - float(b)

    return {arch: (drop(base and base.mean, cell.mean), drop(base and base.paper_mean, cell.paper_mean))
            for arch, cell in by_arch.items() if arch != reference}


def _per_arch_drop_text(ours: float | None, paper: float | None, quoted: bool, latex: bool) -> str:
    missing = "--" if latex else MISSING
    show = (lambda value: missing if value is None else (f"${_fmt(value)}$" if latex else _fmt(value)))
    return show(paper) if quoted else f"{show(ours)} / {show(paper)}"


def render_cross_arch_table(df: pd.DataFrame, paper: Mapping[str, Any], table_id: str, dataset: str = "cifar10",
                            data_labels: Mapping[str, str] | None = None) -> RenderedTable:
    """Table 3 (``table3``, IPC 10) or Table 4 (``table4``, IPC 50): methods x evaluation architectures at one IPC.

    Rows: the paper's rows (quoted ones only when ``dataset`` is the paper's), then every other method evaluated on an
    architecture other than ConvNet (a ConvNet-only method, e.g. the Table 6 ablation, is not a cross-architecture run);
    columns: the paper's archs, any other arch run, and the drop from ConvNet (ConvNet minus the worst other arch).
    Paper numbers only when ``dataset`` is the paper's (CIFAR-10).
    """
    table = _paper_table(paper, table_id)
    number, ipc, paper_dataset = int(table_id.removeprefix("table")), int(table["ipc"]), str(table["dataset"])
    dataset = dataset.strip().lower()
    use_paper = dataset == paper_dataset
    runs = df.loc[(df["dataset"] == dataset) & (df["ipc"] == ipc) & (df["method"] != WHOLE_METHOD)]
    archs = [str(arch) for arch in table["archs"]]
    archs += sorted(set(runs["arch"]) - set(archs))
    paper_rows = [row for row in table["rows"] if use_paper or not row.get("quoted")]
    listed = {canonical_method(row["method"]) for row in paper_rows if row.get("method") is not None}
    cross_methods = set(runs.loc[runs["arch"] != DEFAULT_ARCH, "method"])
    extra_methods = [method for method in METHOD_LABELS if method in cross_methods - listed]
    rows = [(str(row["label"]), None if row.get("method") is None else canonical_method(row["method"]), bool(row.get("quoted")),
             (row.get("acc") or {}) if use_paper else {}) for row in paper_rows]
    rows += [(METHOD_LABELS[method], method, False, {}) for method in extra_methods]
    for label, method, quoted, _ in rows:
        if method is None and not quoted:
            raise ReportError(f"paper numbers {table_id} row {label!r}: a row without a method must be quoted: true")

    groups = _group_map(runs, ["method", "arch"])
    cell_rows = [[_make_cell(label, method, quoted, dataset, ipc, groups.get((method, arch)), acc.get(arch),
                             f"{table_id} {label} {arch}", column=arch) for arch in archs]
                 for label, method, quoted, acc in rows]
    all_cells = [cell for cells in cell_rows for cell in cells]
    max_n = _max_n(all_cells)
    drops = []
    for (label, method, quoted, _), cells in zip(rows, cell_rows):
        ours = None if quoted else cross_arch_drop({cell.column: cell.mean for cell in cells})
        theirs = cross_arch_drop({cell.column: cell.paper_mean for cell in cells})
        drops.append({"label": label, "method": method, "quoted": quoted,
                      "ours_drop": None if ours is None else ours[0], "ours_worst_arch": None if ours is None else ours[1],
                      "paper_drop": None if theirs is None else theirs[0], "paper_worst_arch": None if theirs is None else theirs[1],
                      "_texts": _drop_texts(ours, theirs, quoted)})

    shown = runs.loc[runs["method"].isin({cell.method for cell in all_cells if cell.n})]
    counts = [cell.n for cell in all_cells if cell.n]
    header = (f"Data: {dataset_label(dataset, data_labels)}, IPC {ipc}. Protocol: {_protocol_text(shown, 'each column architecture')}.{_budget_text(shown)} "
              f"Seeds per cell: {_seed_count_text(counts)}.")
    if use_paper:
        title = f"{table['title']} (paper Table {number})"
    else:
        title = f"Cross-architecture generalisation, {dataset_label(dataset, data_labels)} IPC {ipc} (as paper Table {number})"
        header += f" The paper reports this table for {dataset_label(paper_dataset, data_labels)} only: no paper numbers."
    drop_note = (f"Drop from {DEFAULT_ARCH}: {DEFAULT_ARCH} mean minus the lowest mean of the other architectures (named), "
                 "ours over the architectures run, the paper's over its four.")
    any_quoted = any(quoted for _, _, quoted, _ in rows)
    md_labels, tex_labels = _row_labels([row[0] for row in rows], [row[2] for row in rows])
    drop_column = f"Drop from {DEFAULT_ARCH}"
    markdown = _grid_markdown(title, header, "Method", archs + [drop_column], md_labels,
                              [[markdown_cell(cell, max_n) for cell in cells] + [drop["_texts"][0]] for cells, drop in zip(cell_rows, drops)],
                              [_legend_text(latex=False), drop_note] + _quoted_notes(any_quoted, latex=False))
    latex = _grid_latex(table_id, title, header, "Method", [latex_escape(arch) for arch in archs] + [drop_column], tex_labels,
                        [[latex_cell(cell, max_n) for cell in cells] + [drop["_texts"][1]] for cells, drop in zip(cell_rows, drops)],
                        [_legend_text(latex=True), latex_escape(drop_note)] + _quoted_notes(any_quoted, latex=True))
    per_arch = [per_arch_drops(cells) for cells in cell_rows]
    per_arch_markdown, per_arch_latex = _per_arch_drop_tables(table_id, [row[2] for row in rows], per_arch, archs, md_labels, tex_labels,
                                                              f"{dataset_label(dataset, data_labels)} IPC {ipc}")
    markdown += "\n" + per_arch_markdown
    latex += "\n" + per_arch_latex
    extra = {"dataset": dataset, "ipc": ipc, "archs": archs,
             "drops": [{key: value for key, value in drop.items() if key != "_texts"} for drop in drops],
             "per_arch_drops": [{"label": row[0], **{arch: {"ours": ours, "paper": theirs} for arch, (ours, theirs) in drops_of.items()}}
                                for row, drops_of in zip(rows, per_arch)]}
    return RenderedTable(table_id, title, header, markdown, latex, tuple(all_cells), extra)


def _per_arch_drop_tables(table_id: str, quoted: Sequence[bool], per_arch: Sequence[Mapping[str, tuple]], archs: Sequence[str],
                          md_labels: Sequence[str], tex_labels: Sequence[str], setting: str) -> tuple[str, str]:
    """The drop of every architecture, not only the worst: a second table (Markdown, LaTeX) under the first."""
    other_archs = [arch for arch in archs if arch != DEFAULT_ARCH]
    title = f"Drop from {DEFAULT_ARCH} per architecture, {setting}"
    header = f"Positive: the architecture is worse than {DEFAULT_ARCH}."
    note = (f"Each cell: ours / paper, {DEFAULT_ARCH} mean minus the architecture's mean in points (quoted rows: the "
            "paper's only); -: a mean is missing.")
    cells = lambda latex: [[_per_arch_drop_text(*drops_of[arch], is_quoted, latex=latex) for arch in other_archs]  # noqa: E731
                           for is_quoted, drops_of in zip(quoted, per_arch)]
    markdown = _grid_markdown(title, header, "Method", other_archs, md_labels, cells(False), [note])
    latex = _grid_latex(f"{table_id}_drops", title, header, "Method", [latex_escape(arch) for arch in other_archs], tex_labels,
                        cells(True), [latex_escape(note)])
    return markdown, latex


def render_table3(df: pd.DataFrame, paper: Mapping[str, Any], dataset: str = "cifar10", data_labels: Mapping[str, str] | None = None) -> RenderedTable:
    """Table 3: cross-architecture generalisation at IPC 10."""
    return render_cross_arch_table(df, paper, "table3", dataset, data_labels)


def render_table4(df: pd.DataFrame, paper: Mapping[str, Any], dataset: str = "cifar10", data_labels: Mapping[str, str] | None = None) -> RenderedTable:
    """Table 4: cross-architecture generalisation at IPC 50."""
    return render_cross_arch_table(df, paper, "table4", dataset, data_labels)


def format_value(value: float) -> str:
    """A swept parameter value as written by people: 0.7, 2.0, 0.005 (shortest round-trip, at least one decimal)."""
    text = repr(float(value))
    return text if any(char in text for char in ".en") else text + ".0"


BETA_PARAMETER = "cc_beta"


def render_table5(sweeps: pd.DataFrame, paper: Mapping[str, Any], data_labels: Mapping[str, str] | None = None,
                  arch: str = DEFAULT_ARCH) -> RenderedTable:
    """Table 5: accuracy per class-centralization beta, from the sweep tables whose parameter is cc_beta.

    Rows: the paper's betas and every beta run; columns: one per (dataset, ipc, method) swept, the paper's setting
    (CIFAR-10 IPC 10, DM+CC) first and the only one with paper numbers. Only evaluations with ``arch`` count.
    """
    table = _paper_table(paper, "table5")
    setting = (str(table["dataset"]), int(table["ipc"]), canonical_method(table["method"], custom=True))
    beta = sweeps.loc[(sweeps["parameter"] == BETA_PARAMETER) & (sweeps["arch"] == arch)]
    key = ["dataset", "ipc", "method", "value", "seed"]
    clash = beta.duplicated(key, keep=False)
    if clash.any():
        first = beta.loc[clash].iloc[0]
        names = sorted(set(beta.loc[(beta.loc[:, key] == first[key]).all(axis=1), "sweep"]))
        raise ReportError(f"sweeps {', '.join(names)} both hold {first['dataset']} ipc {first['ipc']} {first['method']} "
                          f"cc_beta={format_value(first['value'])} seed {first['seed']}; pass only one of them")
    seen = {(str(d), int(i), str(m)) for d, i, m in beta.loc[:, ["dataset", "ipc", "method"]].itertuples(index=False, name=None)}
    settings = [setting] + sorted(seen - {setting}, key=lambda s: (s[0], s[1], method_rank(s[2])))
    paper_acc = {float(row["beta"]): row["acc"] for row in table["rows"]}
    values = sorted(set(paper_acc) | {float(value) for value in beta["value"]})
    groups = _group_map(beta, ["dataset", "ipc", "method", "value"])
    cell_rows = [[_make_cell(format_value(value), method, False, dataset, ipc, groups.get((dataset, ipc, method, value)),
                             paper_acc.get(value) if (dataset, ipc, method) == setting else None,
                             f"table5 beta {format_value(value)}", column=BETA_PARAMETER)
                  for dataset, ipc, method in settings] for value in values]
    all_cells = [cell for cells in cell_rows for cell in cells]
    max_n = _max_n(all_cells)
    columns = [f"{dataset_label(d, data_labels)} IPC {i}, {method_label(m)}" for d, i, m in settings]
    counts = [cell.n for cell in all_cells if cell.n]
    swept = sorted(set(beta["sweep"]))
    header = (f"Data: {', '.join(dict.fromkeys(dataset_label(d, data_labels) for d, _, _ in settings))}. "
              f"Protocol: {arch} evaluation of each synthetic set, final-model test accuracy"
              f"{' (sweep tables: ' + ', '.join(swept) + ')' if swept else ''}. Seeds per cell: {_seed_count_text(counts)}. "
              f"Paper numbers only in the {columns[0]} column (the paper's setting).")
    if setting in seen or not seen:
        title = f"{table['title']} (paper Table 5)"
    else:  # only other settings ran (the digits demo): the title names them, not the paper's CIFAR-10
        title = f"beta sweep of class centralization, {'; '.join(columns[1:])} (as paper Table 5)"
    markdown = _grid_markdown(title, header, "β (cc_beta)", columns, [format_value(v) for v in values],
                              [[markdown_cell(cell, max_n) for cell in cells] for cells in cell_rows], [_legend_text(latex=False)])
    latex = _grid_latex("table5", title, header, "$\\beta$", [latex_escape(column) for column in columns],
                        [format_value(v) for v in values], [[latex_cell(cell, max_n) for cell in cells] for cells in cell_rows],
                        [_legend_text(latex=True)])
    extra = {"parameter": BETA_PARAMETER, "sweeps": swept, "values": values}
    return RenderedTable("table5", title, header, markdown, latex, tuple(all_cells), extra)


TABLE7_PAPER_DECIMALS = 2  # Table 7 gives means with two decimals: shown as published
_TABLE7_COLUMNS = ("random", "kcenter", "DC", "DSA", "dm", "dm_iid", "idm_iid")  # re-run method ids and quoted labels, in order
_TABLE7_OURS_LABEL = "Ours"  # the paper's column for its IDM+IID


def _table7_columns(table: Mapping[str, Any], use_paper: bool) -> list[tuple[str, str, str, str | None, bool, Mapping]]:
    """(label, Markdown header, LaTeX header, method, quoted, paper acc by IPC) per column of Table 7."""
    by_label = {str(row["label"]): row for row in table["rows"]}
    by_method = {canonical_method(row["method"]): row for row in table["rows"] if row.get("method") is not None}
    columns = []
    for name in _TABLE7_COLUMNS:
        if name in METHOD_LABELS:
            row = by_method.get(name)
            acc = (row.get("acc") or {}) if (row is not None and use_paper) else {}
            label = heading = METHOD_LABELS[name]
            if use_paper and row is not None and str(row["label"]) == _TABLE7_OURS_LABEL:
                heading = f"{label} (paper: {_TABLE7_OURS_LABEL})"  # cells: our IDM+IID / the paper's Ours / difference
            columns.append((label, heading, latex_escape(heading), name, False, acc))
        elif use_paper and name in by_label:
            row = by_label[name]
            columns.append((name, f"{name}{DAGGER_MD}", latex_escape(name) + "$^\\dagger$", None, True, row.get("acc") or {}))
    return columns


def table7_ipcs(df: pd.DataFrame, paper: Mapping[str, Any], dataset: str = "cifar10", ipcs: Sequence[int] | None = None,
                arch: str = DEFAULT_ARCH) -> list[int]:
    """Rows of Table 7: ``ipcs`` if given, else the paper's IPCs plus every IPC a Table 7 method was run at."""
    if ipcs is not None:
        chosen = sorted({_as_int(ipc, "ipc", "--compression-ipcs") for ipc in ipcs})
        if not chosen or chosen[0] < 1:
            raise ReportError(f"--compression-ipcs {list(ipcs)}: expected positive numbers of images per class")
        return chosen
    table = _paper_table(paper, "table7")
    runs = df.loc[(df["dataset"] == dataset) & (df["arch"] == arch) & df["method"].isin(_TABLE7_COLUMNS)]
    return sorted({int(ipc) for ipc in table["ipcs"]} | {int(ipc) for ipc in runs["ipc"]})


def _paper_whole(paper: Mapping[str, Any], dataset: str) -> Any:
    """The paper's whole-dataset accuracy of ``dataset`` (Tables 1/2), None where it gives none."""
    for table_id in ("table1", "table2"):
        whole = (paper.get(table_id) or {}).get("whole_dataset") or {}
        if dataset in whole:
            return whole[dataset]
    return None


def _percent(value: float | None, whole: float | None) -> float | None:
    return None if value is None or whole is None or whole == 0 else 100.0 * value / whole


def _percent_texts(ours: float | None, theirs: float | None, quoted: bool) -> tuple[str, str]:
    """Markdown and LaTeX "ours / paper / diff" of percentages of the whole-dataset accuracy."""
    if quoted:
        return (MISSING, "--") if theirs is None else (_fmt(theirs), f"${_fmt(theirs)}$")
    if ours is None and theirs is None:
        return MISSING, "--"
    diff = format_diff(ours, theirs) if ours is not None and theirs is not None else None
    markdown = f"{MISSING if ours is None else _fmt(ours)} / {MISSING if theirs is None else _fmt(theirs)} / {diff or MISSING}"
    second = ("--" if theirs is None else f"${_fmt(theirs)}$") + (f" (${diff}$)" if diff else "")
    return markdown, f"\\shortstack{{{'--' if ours is None else f'${_fmt(ours)}$'}\\\\{{\\tiny {second}}}}}"


def render_table7(df: pd.DataFrame, paper: Mapping[str, Any], dataset: str = "cifar10", ipcs: Sequence[int] | None = None,
                  data_labels: Mapping[str, str] | None = None, arch: str = DEFAULT_ARCH) -> RenderedTable:
    """Table 7: accuracy per IPC (compression ratio) for Random, K-Center, DC†, DSA†, DM, DM+IID and IDM+IID.

    The paper's "Ours" column (its IDM+IID) is compared with our IDM+IID; DM+IID has no paper number. Below the IPC
    rows: the whole-dataset accuracy (ours: method ``whole``; paper: Table 1/2) and each column as a percentage of it
    at the largest IPC with a run of ours (the table's largest IPC when nothing ran). Paper numbers only for CIFAR-10.
    """
    table = _paper_table(paper, "table7")
    dataset = dataset.strip().lower()
    use_paper = dataset == str(table["dataset"])
    ipcs = table7_ipcs(df, paper, dataset, ipcs, arch)
    columns = _table7_columns(table, use_paper)
    runs = df.loc[(df["dataset"] == dataset) & (df["arch"] == arch)]
    groups = _group_map(runs, ["method", "ipc"])
    cell_rows = [[_make_cell(label, method, quoted, dataset, ipc, groups.get((method, ipc)), acc.get(ipc), f"table7 {label} ipc {ipc}")
                  for label, _, _, method, quoted, acc in columns] for ipc in ipcs]
    whole = _make_cell(METHOD_LABELS[WHOLE_METHOD], WHOLE_METHOD, False, dataset, WHOLE_IPC,
                       runs.loc[runs["method"] == WHOLE_METHOD], _paper_whole(paper, dataset), f"whole_dataset {dataset}")
    all_cells = [cell for cells in cell_rows for cell in cells]
    max_n = _max_n(all_cells + [whole])
    run_ipcs = [ipc for ipc, cells in zip(ipcs, cell_rows) if any(cell.n for cell in cells)]
    percent_ipc = max(run_ipcs) if run_ipcs else max(ipcs)
    percent_cells = cell_rows[ipcs.index(percent_ipc)]
    percents = [{"label": cell.label, "method": cell.method, "quoted": cell.quoted, "ipc": percent_ipc,
                 "ours": None if cell.quoted else _percent(cell.mean, whole.mean), "paper": _percent(cell.paper_mean, whole.paper_mean)}
                for cell in percent_cells]
    percent_texts = [_percent_texts(p["ours"], p["paper"], p["quoted"]) for p in percents]

    counts = [cell.n for cell in all_cells + [whole] if cell.n]
    shown = runs.loc[runs["method"].isin({cell.method for cell in all_cells + [whole] if cell.n})]
    header = (f"Data: {dataset_label(dataset, data_labels)}. Protocol: {_protocol_text(shown, arch)}.{_budget_text(shown)} "
              f"Seeds per cell: {_seed_count_text(counts)}.")
    if use_paper:
        title = f"{table['title']} (paper Table 7)"
        header += (f" The paper gives means only (shown with its {TABLE7_PAPER_DECIMALS} decimals); its \"{_TABLE7_OURS_LABEL}\" column is "
                   "IDM+IID (IPC 1/10/50 equal Table 1), compared here with our IDM+IID; DM+IID has no paper number.")
    else:
        title = f"Accuracy at different compression ratios (high IPC), {dataset_label(dataset, data_labels)} (as paper Table 7)"
        header += f" The paper reports this table for {dataset_label(str(table['dataset']), data_labels)} only: no paper numbers."
    percent_label = f"% of whole dataset (IPC {percent_ipc})"
    notes_md = [_legend_text(latex=False),
                f"{percent_label}: each column's accuracy at IPC {percent_ipc} (the largest IPC with a run of ours) divided by the "
                "whole-dataset accuracy, ours by ours and the paper's by the paper's, in percent."]
    paper_note = table.get("note")
    if use_paper and paper_note:
        ours_paper = next((cell for cell in cell_rows[ipcs.index(max(ipcs))] if cell.method == "idm_iid"), None)
        computed = _percent(None if ours_paper is None else ours_paper.paper_mean, whole.paper_mean)
        notes_md.append(f"Paper note: \"{paper_note}\"" + (f" (its Table 7 gives {_fmt(computed)}% at IPC {max(ipcs)} against "
                                                           f"{_fmt(whole.paper_mean)}.)" if computed is not None else ""))
    any_quoted = any(column[4] for column in columns)
    notes_tex = [_legend_text(latex=True)] + [latex_escape(note) for note in notes_md[1:]] + _quoted_notes(any_quoted, latex=True)
    notes_md += _quoted_notes(any_quoted, latex=False)

    blank = [""] * (len(columns) - 1)
    md_rows = [[markdown_cell(cell, max_n, TABLE7_PAPER_DECIMALS) for cell in cells] for cells in cell_rows]
    md_rows += [[markdown_cell(whole, max_n)] + blank, [text for text, _ in percent_texts]]
    tex_rows = [[latex_cell(cell, max_n, TABLE7_PAPER_DECIMALS) for cell in cells] for cells in cell_rows]
    tex_rows += [[latex_cell(whole, max_n)] + blank, [text for _, text in percent_texts]]
    labels = [f"IPC {ipc}" for ipc in ipcs]
    markdown = _grid_markdown(title, header, "IPC", [column[1] for column in columns],
                              labels + [METHOD_LABELS[WHOLE_METHOD], percent_label], md_rows, notes_md)
    latex = _grid_latex("table7", title, header, "IPC", [column[2] for column in columns],
                        labels + [latex_escape(METHOD_LABELS[WHOLE_METHOD]), latex_escape(percent_label)], tex_rows, notes_tex,
                        rule_before=[len(ipcs)])
    extra = {"dataset": dataset, "ipcs": ipcs, "percent_of_whole": percents}
    return RenderedTable("table7", title, header, markdown, latex, tuple(all_cells + [whole]), extra)
