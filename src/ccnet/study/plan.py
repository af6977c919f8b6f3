"""What ``ccnet reproduce`` trains: the paper's ablations as variants of the synthetic default job.

Every variant is the default job (:class:`ccnet.config.Config`: ResNet-18 CCNet at output stride
16 on the synthetic long-range-context scenes, gamma starting at 1, head at 10x the learning rate,
gradients clipped) with a few ``key=value`` overrides, so that variants differ in one thing only.
A variant used by several ablations (the no-context baseline is the paper's R=0 and its "no
context module"; RCCA R=2 without the consistency loss appears in all three) is trained once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ccnet.config import Config, apply_overrides


@dataclass(frozen=True)
class Variant:
    """One model/loss setting: a name (its folder), a label for the report and its overrides.
    ``cost_as``: a variant with the same model and loss (same cost, measured once)."""

    name: str
    label: str
    overrides: tuple[str, ...]
    cost_as: str | None = None


@dataclass(frozen=True)
class Ablation:
    """One table of the paper: rows (label, variant name) in the paper's order, with the paper's
    mIoU per row where it reports one (Cityscapes val)."""

    name: str
    title: str
    rows: tuple[tuple[str, str], ...]
    paper: dict[str, float] = field(default_factory=dict)
    source: str = ""
    extra: bool = False  # not one of the paper's ablations: trained only when asked for (--only)


# DeepLabv3 uses dilation rates (6, 12, 18) on 33x33 features (513x513 crops, output stride 16);
# the study's 160x160 scenes at output stride 16 give 10x10 features, so the rates scale to (2, 4, 6).
STUDY_ASPP_RATES = "[2, 4, 6]"

VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("none", "no context module (FCN head, = R=0)", ("model.context=none",)),
    Variant("rcca_r1", "RCCA R=1", ("model.context=rcca", "model.recurrence=1")),
    Variant("rcca_r2", "RCCA R=2", ("model.context=rcca", "model.recurrence=2")),
    Variant("rcca_r3", "RCCA R=3", ("model.context=rcca", "model.recurrence=3")),
    Variant("ppm", "pyramid pooling (PSPNet PPM)", ("model.context=ppm",)),
    Variant("aspp", "ASPP (DeepLabv3)", ("model.context=aspp", f"model.aspp_rates={STUDY_ASPP_RATES}")),
    Variant("nonlocal", "one non-local block", ("model.context=nonlocal",)),
    Variant("ccl_quadratic", "RCCA R=2 + consistency loss, quadratic",
            ("model.context=rcca", "model.recurrence=2", "loss.consistency=true",
             "loss.consistency_variant=quadratic")),
    Variant("ccl_piecewise", "RCCA R=2 + consistency loss, piece-wise",
            ("model.context=rcca", "model.recurrence=2", "loss.consistency=true",
             "loss.consistency_variant=piecewise")),
)}

# The designed task variant (ccnet.data.synthetic_two_keys): the context-module comparison on scenes
# whose grey objects each need their own one of two keys, which an image-wide summary cannot give.
TWO_KEYS_OF = ("none", "ppm", "aspp", "nonlocal", "rcca_r2")
VARIANTS.update({f"two_keys_{base}": Variant(f"two_keys_{base}", f"{VARIANTS[base].label}, two-key task",
                                             (*VARIANTS[base].overrides, "data.synthetic_task=two_keys"), base)
                 for base in TWO_KEYS_OF})

ABLATIONS: dict[str, Ablation] = {a.name: a for a in (
    Ablation("loops", "Loops of criss-cross attention (R)",
             (("R=0", "none"), ("R=1", "rcca_r1"), ("R=2", "rcca_r2"), ("R=3", "rcca_r3")),
             {"none": 75.1, "rcca_r1": 78.0, "rcca_r2": 79.8, "rcca_r3": 80.2},
             "ICCV 2019 / TPAMI 2020, loops ablation: Cityscapes val, ResNet-101"),
    Ablation("context", "Context modules at the same place on the same backbone",
             (("none (FCN)", "none"), ("PPM", "ppm"), ("ASPP", "aspp"), ("non-local", "nonlocal"),
              ("RCCA R=2", "rcca_r2")),
             {"none": 75.1, "nonlocal": 79.1, "rcca_r2": 79.8},
             "ICCV 2019 / TPAMI 2020, context aggregation comparison: Cityscapes val, ResNet-101; "
             "PPM and ASPP below RCCA"),
    Ablation("consistency", "Category consistent loss (TPAMI)",
             (("off", "rcca_r2"), ("quadratic", "ccl_quadratic"), ("piece-wise", "ccl_piecewise")),
             {"rcca_r2": 79.8, "ccl_piecewise": 80.5},
             "TPAMI 2020: Cityscapes val; piece-wise slightly better than quadratic and more stable"),
    Ablation("two_keys", "Context modules on the two-key task (designed here, not in the paper)",
             (("none (FCN)", "two_keys_none"), ("PPM", "two_keys_ppm"), ("ASPP", "two_keys_aspp"),
              ("non-local", "two_keys_nonlocal"), ("RCCA R=2", "two_keys_rcca_r2")),
             {}, "not in the paper: each grey object takes the colour of the one of two keys whose frame matches "
                 "its tint (ccnet.data.synthetic_two_keys), so no image-wide summary gives the answer", extra=True),
)}


@dataclass(frozen=True)
class StudySettings:
    """Size and length of every run. ``full()``: the default job's model, optimiser and batch on
    smaller, shorter runs than the default job (160x160 scenes instead of 192x192, 250 iterations
    of batch 8 instead of 500, 64 validation scenes), chosen so that the 42 runs of the study
    (the paper's ablations and the two-key task, 3 seeds) take about two hours on this 2-core
    machine as two processes of one thread each (~5-6 min per run each);
    ``quick()``: a pipeline check in seconds, whose numbers mean nothing."""

    size: tuple[int, int] = (160, 160)
    iterations: int = 250
    batch_size: int = 8
    val_samples: int = 64
    eval_interval: int = 50  # learning curves: evaluate every N iterations (0: only at the end)
    checkpoint_interval: int = 125
    log_interval: int = 20
    visualizations: int = 2
    seeds: tuple[int, ...] = (0, 1, 2)

    @classmethod
    def full(cls) -> StudySettings:
        return cls()

    @classmethod
    def quick(cls) -> StudySettings:
        return cls(size=(32, 32), iterations=2, batch_size=2, val_samples=2, eval_interval=1,
                   checkpoint_interval=2, log_interval=1, visualizations=0, seeds=(0, 1))

    def overrides(self) -> list[str]:
        return [
            f"data.synthetic_size=[{self.size[0]}, {self.size[1]}]",
            f"data.batch_size={self.batch_size}",
            f"data.synthetic_val_samples={self.val_samples}",
            "data.workers=0",
            f"optim.iterations={self.iterations}",
            f"eval.interval={self.eval_interval}",
            f"checkpoint_interval={self.checkpoint_interval}",
            f"log_interval={self.log_interval}",
            f"num_visualizations={self.visualizations}",
            "device=cpu",
        ]


def main_variants() -> list[str]:
    """The variants of the paper's ablations (what a plain ``ccnet reproduce`` trains)."""
    chosen = {variant for a in ABLATIONS.values() if not a.extra for _, variant in a.rows}
    return [name for name in VARIANTS if name in chosen]


def select_variants(only: list[str] | tuple[str, ...] | None) -> list[str]:
    """Variant names for ``--only`` (variant or ablation names; the paper's ablations when empty),
    in plan order."""
    if not only:
        return main_variants()
    chosen: set[str] = set()
    for name in only:
        if name in ABLATIONS:
            chosen.update(variant for _, variant in ABLATIONS[name].rows)
        elif name in VARIANTS:
            chosen.add(name)
        else:
            raise ValueError(f"--only {name!r}: not a variant or ablation; variants: {', '.join(VARIANTS)}; "
                             f"ablations: {', '.join(ABLATIONS)}")
    return [name for name in VARIANTS if name in chosen]


def run_config(variant: str, seed: int, settings: StudySettings) -> Config:
    """The full training config of one run: the default job, the study's size, the variant."""
    config = Config()
    config.name = f"{variant}-seed{seed}"
    config.seed = seed
    return apply_overrides(config, [*settings.overrides(), *VARIANTS[variant].overrides])
