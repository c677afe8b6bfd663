"""Words shared by the report and the app: why a view has nothing to show (and what shows something
instead), and what the error-type abbreviations mean.

An empty figure or table never stays silent: it says in one line why it is empty (the run's
filter kept nothing, the records hold no ground truth, DICC was off ...) and offers the fix
(look at all queries, or at the thresholds that would keep something). The functions here only
write sentences from facts the caller already has; they compute nothing.
"""
from __future__ import annotations

from pldc_core.method.filters import Thresholds
from pldc_core.records.schema import ERROR_TYPES

# The error types of docs/METHOD.md (Fig. 5): a short name for legends, the rule for hover text.
ERROR_TYPE_NAMES = {"Cor": "correct", "Sim": "similar class", "Oth": "other class", "Loc": "poor mask",
                    "BG": "background", "Both": "wrong class, poor mask"}
ERROR_TYPE_RULES = {
    "Cor": "a ground truth of the same class overlaps it with mask IoU > 0.5",
    "Sim": "a ground truth of another class of the same supercategory overlaps it with IoU > 0.5",
    "Oth": "a ground truth of another supercategory overlaps it with IoU > 0.5",
    "Loc": "a ground truth of the same class overlaps it, but only with 0 < IoU <= 0.5",
    "BG": "it overlaps no ground truth",
    "Both": "only ground truths of other classes overlap it, with 0 < IoU <= 0.5",
}


def error_label(error_type: str) -> str:
    """``"Sim (similar class)"``: the abbreviation with its meaning, for legends."""
    return f"{error_type} ({ERROR_TYPE_NAMES[error_type]})"


def error_rule(error_type: str) -> str:
    """``"Sim = similar class: a ground truth of ..."``, for hover text."""
    return f"{error_type} = {ERROR_TYPE_NAMES[error_type]}: {ERROR_TYPE_RULES[error_type]}"


def error_glossary(types=ERROR_TYPES) -> str:
    """Every abbreviation of ``types`` defined, in one sentence."""
    return "; ".join(f"{t} = {ERROR_TYPE_NAMES[t]} ({ERROR_TYPE_RULES[t]})" for t in types) + "."


def filter_label(kept_by: str) -> str:
    """'DDTF' or 'the coupled filter'."""
    return "DDTF" if kept_by == "ddtf" else "the coupled filter"


def best_thresholds(best: dict | None) -> str:
    """``"the best what-if thresholds by F1, c_t = 0.55 and m_t = 0.60 (12 kept, F1 0.41)"``; '' when no
    threshold keeps a correct pseudo-label (``best`` None or its F1 0)."""
    if not best or not best.get("f1"):
        return ""
    if best.get("c_t") is not None and best.get("m_t") is not None:
        where = f"c_t = {best['c_t']:.2f} and m_t = {best['m_t']:.2f}"
    else:
        where = f"s_t = {best['s_t']:.2f}"
    return f"the best what-if thresholds by F1, {where} ({int(best['kept']):,} kept, F1 {best['f1']:.2f})"


def nothing_kept(thresholds: Thresholds, iteration: int, best: dict | None = None,
                 fix: str = "showing all queries instead") -> str:
    """The run's filter kept no pseudo-label at this checkpoint: why a kept-only view is empty, and the fix."""
    text = (f"The run's {filter_label(thresholds.kept_by)} ({thresholds.describe()}) kept no pseudo-label "
            f"at iteration {int(iteration):,}: {fix}")
    hint = best_thresholds(best)
    return text + (f"; to see a kept set, try {hint}" if hint else "") + "."


def nothing_passes(thresholds: Thresholds, best: dict | None = None) -> str:
    """No query passes the thresholds being tried (sliders, Compare)."""
    hint = best_thresholds(best)
    return (f"No query passes {thresholds.describe()}: lower the thresholds"
            + (f", e.g. to {hint}" if hint else "") + ", or show all queries.")


def no_ground_truth(what: str, plural: bool = True) -> str:
    """``what`` (e.g. 'error types') needs annotations that these records do not hold."""
    return (f"{what[:1].upper()}{what[1:]} {'need' if plural else 'needs'} ground truth, and these records hold "
            "none (the images were recorded without annotations).")


def dicc_reason(on_in_run: bool, kept: int, phase: str | None = None) -> str:
    """Why DICC changed nothing at a checkpoint: off in the run, nothing kept to correct, or burn-in."""
    if not on_in_run:
        return "DICC was off in this run (pldc.dicc=false): it corrected no class."
    if kept == 0:
        return ("DICC corrects the kept pseudo-labels, and the run's filter kept none at this checkpoint: "
                "it had nothing to correct.")
    if phase == "burn_in":
        return "DICC did not run at this checkpoint: the run was still in its burn-in."
    return "DICC did not run at this checkpoint."
