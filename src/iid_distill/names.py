"""Method ids, their display labels, colours and report order: the one home of these names.

A method id is what a job runs (``dm_iid``; params.yaml ``distill.methods``, the coresets, ``whole``); sets and
records carry it as ``method_id``, and the report groups by it. The ids below have labels, colours and a place in
the report's order (the paper's methods, and params.yaml's variants ``dm_cc_eq3`` and ``dm_cc_margin``). Any other id
(a user's own method in params.yaml) is a method of its own: shown under its id, after the known ones, in a colour
of its own, and never merged into a known row.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from iid_distill.utils import UserError

WHOLE_METHOD = "whole"

# Known method ids, in report order, with their display labels.
METHOD_LABELS: dict[str, str] = {
    "random": "Random",
    "herding": "Herding",
    "kcenter": "K-Center",
    "forgetting": "Forgetting",
    "dm": "DM",
    "dm_cc": "DM+CC",
    "dm_cm": "DM+CM",
    "dm_iid": "DM+IID",
    "dm_cc_eq3": "DM+CC (Eq. 3)",       # Eq. 3 as printed: exp form, alpha 0.02 (params.yaml distill.methods)
    "dm_cc_margin": "DM+CC (margin)",   # the form in which beta acts: Table 5 and Figure 3
    "idm": "IDM",
    "idm_cc": "IDM+CC",
    "idm_cm": "IDM+CM",
    "idm_iid": "IDM+IID",
    "datadam": "DataDAM",
    "datadam_cc": "DataDAM+CC",
    "datadam_cm": "DataDAM+CM",
    "datadam_iid": "DataDAM+IID",
    "m3d": "M3D",
    "m3d_cc": "M3D+CC",
    "m3d_cm": "M3D+CM",
    "m3d_iid": "M3D+IID",
    WHOLE_METHOD: "Whole dataset",
}
# Other spellings seen in the paper and in hand-written records.
METHOD_ALIASES: dict[str, str] = {
    "DM+Ours": "dm_iid",
    "IDM+Ours": "idm_iid",
    "Full dataset": WHOLE_METHOD,
    "Full": WHOLE_METHOD,
}
# One colour per known id, the same in every figure (tab10/tab20 hues).
METHOD_COLORS: dict[str, str] = {
    "random": "#7f7f7f",
    "herding": "#bcbd22",
    "kcenter": "#8c564b",
    "forgetting": "#e377c2",
    "dm": "#1f77b4",
    "dm_cc": "#17becf",
    "dm_cm": "#9467bd",
    "dm_iid": "#ff7f0e",
    "dm_cc_eq3": "#9edae5",
    "dm_cc_margin": "#393b79",
    "idm": "#2ca02c",
    "idm_cc": "#98df8a",
    "idm_cm": "#c5b0d5",
    "idm_iid": "#d62728",
    "datadam": "#8c6d31",
    "datadam_cc": "#bd9e39",
    "datadam_cm": "#e7ba52",
    "datadam_iid": "#ad494a",
    "m3d": "#5254a3",
    "m3d_cc": "#8ca252",
    "m3d_cm": "#b5cf6b",
    "m3d_iid": "#7b4173",
    WHOLE_METHOD: "#000000",
}
# Colours for other ids (tab20's lighter hues and a few more), picked by a hash of the id: stable across runs.
CUSTOM_COLORS = ("#aec7e8", "#ffbb78", "#ff9896", "#c49c94", "#f7b6d2", "#dbdb8d", "#637939", "#843c39")
METHOD_ID_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")  # as params.schema.yaml's method ids


class MethodNameError(UserError):
    """A method name that is neither a known id, a known label nor (where allowed) a method id of its own."""


def _name_key(name: str) -> str:
    """Case-, space- and separator-insensitive form: "DM+IID", "dm_iid" and "dm-iid" all become "dmiid"."""
    return re.sub(r"[\s_+\-]", "", name.lower())


_METHOD_BY_KEY: dict[str, str] = {
    **{_name_key(alias): method for alias, method in METHOD_ALIASES.items()},
    **{_name_key(label): method for method, label in METHOD_LABELS.items()},
    **{_name_key(method): method for method in METHOD_LABELS},
}


def canonical_method(name: Any, *, custom: bool = False) -> str:
    """The method id of ``name``: a known id or label ("DM+IID" -> ``dm_iid``); with ``custom``, also any other
    method id (``dm_cc_eq3``), kept as it is."""
    if not isinstance(name, str) or not name.strip():
        raise MethodNameError(f"method {name!r}: expected a method name such as {', '.join(METHOD_LABELS)}")
    name = name.strip()
    if custom and METHOD_ID_PATTERN.match(name):
        return name  # an exact id, known or not: "dmcc" is not merged into dm_cc
    method = _METHOD_BY_KEY.get(_name_key(name))
    if method is None:
        hint = " or a method id of params.yaml (lower case, digits, _)" if custom else " (or their labels, e.g. DM+IID)"
        raise MethodNameError(f"unknown method {name!r}; valid ids: {', '.join(METHOD_LABELS)}{hint}")
    return method


def method_label(method: str) -> str:
    """The display label of a method id ("DM+IID"); an id of its own is shown as itself."""
    method = canonical_method(method, custom=True)
    return METHOD_LABELS.get(method, method)


def method_rank(method: str) -> tuple[int, str]:
    """Report order: the known ids as listed, then the others by name."""
    return (list(METHOD_LABELS).index(method), "") if method in METHOD_LABELS else (len(METHOD_LABELS), method)


def method_color(method: str) -> str:
    """The fixed colour of a method id or label (``dm_iid``, "DM+IID"); another id gets a stable colour of its own."""
    method = canonical_method(method, custom=True)
    if method in METHOD_COLORS:
        return METHOD_COLORS[method]
    return CUSTOM_COLORS[int(hashlib.sha256(method.encode()).hexdigest(), 16) % len(CUSTOM_COLORS)]
