"""The paper's published numbers that the study's reports quote, each with where it comes from.

CCNet: Criss-Cross Attention for Semantic Segmentation (Huang et al., ICCV 2019; extended in TPAMI
2020). Accuracies are Cityscapes val mIoU (%) with a ResNet-101 backbone; the reports compare only
the direction of each claim with the synthetic study, never the values. One table, so that no
report retypes a number.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PaperNumber:
    """One number (or statement, where the paper gives no number) and where the paper gives it."""

    key: str
    value: float | None  # None: the paper states a direction only
    text: str  # as the paper states it
    source: str


_LOOPS = "ICCV 2019 / TPAMI 2020, ablation of the number of loops R (Cityscapes val, ResNet-101)"
_CONTEXT = "ICCV 2019 / TPAMI 2020, comparison of context aggregation modules (Cityscapes val, ResNet-101)"
_CCL = "TPAMI 2020, ablation of the category consistent loss (Cityscapes val, ResNet-101)"
_COST = "ICCV 2019 / TPAMI 2020, abstract and the non-local comparison (97x97 features, 512 channels)"

PAPER: dict[str, PaperNumber] = {p.key: p for p in (
    PaperNumber("r0", 75.1, "75.1", _LOOPS),
    PaperNumber("r1", 78.0, "78.0", _LOOPS),
    PaperNumber("r2", 79.8, "79.8", _LOOPS),
    PaperNumber("r3", 80.2, "80.2", _LOOPS),
    PaperNumber("nonlocal", 79.1, "79.1", _CONTEXT),
    PaperNumber("ppm", None, "below RCCA", _CONTEXT),
    PaperNumber("aspp", None, "below RCCA", _CONTEXT),
    PaperNumber("ccl_piecewise", 80.5, "80.5", _CCL),
    PaperNumber("ccl_quadratic", None, "below the piece-wise form", _CCL),
    PaperNumber("stability", None, "the piece-wise form trains more stably than the quadratic one", _CCL),
    PaperNumber("memory_ratio", 11.0, "11x less GPU memory than one non-local block", _COST),
    PaperNumber("flops_fewer", 0.85, "about 85% fewer FLOPs than one non-local block", _COST),
)}


def value(key: str) -> float:
    """The paper's number ``key``; a clear error where the paper gives only a direction."""
    number = PAPER[key]
    if number.value is None:
        raise ValueError(f"the paper gives no number for {key!r}, only: {number.text}")
    return number.value


def versus(better: str, baseline: str) -> str:
    """``"78.0 vs 75.1 (+2.9)"``, or the paper's words where it gives no number for one side."""
    a, b = PAPER[better], PAPER[baseline]
    if a.value is None or b.value is None:
        return f"{(b if b.value is None else a).text}"
    return f"{a.text} vs {b.text} ({a.value - b.value:+.1f})"


# The claim each planned comparison (plan.json's names) asks of the study, as the paper reports it.
PLANNED: dict[str, str] = {
    "r1_vs_r0": versus("r1", "r0"),
    "r2_vs_r1": versus("r2", "r1"),
    "rcca_vs_none": versus("r2", "r0"),
    "rcca_vs_ppm": f"RCCA {PAPER['r2'].text}, PPM {PAPER['ppm'].text}",
    "rcca_vs_aspp": f"RCCA {PAPER['r2'].text}, ASPP {PAPER['aspp'].text}",
    "rcca_vs_nonlocal": versus("r2", "nonlocal"),
    "ccl_piecewise_vs_off": versus("ccl_piecewise", "r2"),
    "ccl_piecewise_vs_quadratic": "piece-wise ahead of quadratic",
    "piecewise_more_stable": "piece-wise more stable",
}


def planned(name: str) -> str:
    """The paper's side of planned comparison ``name`` ("-" for a comparison the paper does not make)."""
    return PLANNED.get(name, "-")
