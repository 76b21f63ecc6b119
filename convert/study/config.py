"""The study's one configuration: same data, same step budget, same evaluation for every variant.

A flat YAML mapping of StudyConfig fields (convert/study/configs/*.yaml), checked like train/config.py:
an unknown key or a wrong type is a ConfigError naming the file, line and key.

Step budget: every variant gets `steps` optimiser steps in total. A variant derived from a trained
parent (tucker from the teacher; prune*, qat from the student) starts from the parent's snapshot taken
at step `steps - finetune_steps` and is fine-tuned for the remaining `finetune_steps`, so its weights
have seen exactly `steps` batches, like the student's. (kd/kd_ie train from scratch for `steps`; the
teacher's own training is its own row and is not charged to them, as is usual for distillation.)
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

from train.config import Config, ConfigError, DataConfig, ModelConfig, TrainConfig, _section, compose_mapping

# Row order; a variant comes after the variants it is derived from or distilled from.
ALL_VARIANTS = ("teacher", "student", "fire", "tucker", "prune50", "prune80", "kd", "kd_ie", "binary", "qat",
                "ptq16x8")
PARENT = {"tucker": "teacher", "kd": "teacher", "kd_ie": "teacher", "qat": "student", "ptq16x8": "student"}
_PRUNE = re.compile(r"prune(\d\d)$")


@dataclass(frozen=True)
class StudyConfig:
    name: str = ""  # "" = the YAML file's stem; results in out_dir/name/<variant>/
    out_dir: str = "out/study"
    dataset: str = "out/synth"
    variants: tuple[str, ...] = ALL_VARIANTS  # the sparsities are in the names: pruneNN = NN % of weights
    steps: int = 1500  # optimiser steps per variant (see the module docstring for derived variants)
    finetune_fraction: float = 0.3  # share of `steps` that tucker/prune/qat fine-tune after deriving
    batch_size: int = 16
    lr: float = 2e-3  # peak (AdamW, warmup + cosine, as train.train.compile_model)
    finetune_lr: float = 5e-4  # peak for the fine-tuning phase of derived variants
    warmup_steps: int = 100
    max_train_samples: int = 0  # 0 = the whole train split
    eval_samples: int = 512  # test-split samples scored (first N in index order); 0 = all
    n_calib: int = 200  # validation crops for PTQ calibration (≥ 100)
    bench_runs: int = 200  # int8 invokes timed (median), 1 thread
    n_bins: int = 20
    student_s1_widths: tuple[int, ...] = ModelConfig.s1_widths
    student_s2_widths: tuple[int, ...] = ModelConfig.s2_widths
    student_blocks: tuple[int, ...] = ModelConfig.blocks
    teacher_s1_widths: tuple[int, ...] = (24, 48, 96, 192, 384)  # plain 3×3 convs: ~11× the student's MACs
    teacher_s2_widths: tuple[int, ...] = (16, 32, 64, 128, 256)
    teacher_blocks: tuple[int, ...] = ModelConfig.blocks
    fire_squeeze_ratio: float = 0.25  # squeeze width / block width
    tucker_rank_ratio: float = 0.25  # Tucker-2 rank / channels, both modes
    prune_end_fraction: float = 0.6  # sparsity reaches its target at this share of the fine-tuning
    prune_every: int = 10  # steps between mask updates (masks are re-applied after every step)
    temperature: float = 4.0  # KD softmax temperature on the stage I bins
    kd_weight: float = 1.0  # weight of T²·KL(teacher ‖ student) (bins) and of the L1 to the teacher relief
    ie_weight: float = 1.0  # inheritance loss weight (kd_ie)
    explore_weight: float = 0.5  # exploration loss weight (kd_ie)
    seed: int = 0
    log_every: int = 50  # one log line per this many steps
    run_eagerly: bool = False  # tests: skip graph tracing for a handful of steps

    @property
    def finetune_steps(self) -> int:
        return max(1, round(self.finetune_fraction * self.steps))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def sparsity_of(variant: str) -> float | None:
    m = _PRUNE.match(variant)
    return int(m.group(1)) / 100 if m else None


def parent_of(variant: str) -> str | None:
    return "student" if sparsity_of(variant) is not None else PARENT.get(variant)


def check_variants(names) -> tuple[str, ...]:
    known = set(ALL_VARIANTS) - {"prune50", "prune80"}
    bad = [v for v in names if v not in known and sparsity_of(v) is None]
    if bad:
        raise ConfigError(f"unknown variant(s) {', '.join(bad)} (known: {', '.join(ALL_VARIANTS)}, pruneNN)")
    return tuple(names)


def with_parents(names) -> tuple[str, ...]:
    """`names` plus the variants they need, in row order (teacher and student first)."""
    wanted = set(check_variants(names))
    wanted |= {parent_of(v) for v in list(wanted) if parent_of(v)}
    order = {v: i for i, v in enumerate(ALL_VARIANTS)}
    return tuple(sorted(wanted, key=lambda v: (order.get(v, order["prune80"]), v)))


def parse_study(text: str, path: str = "<string>") -> StudyConfig:
    root = compose_mapping(text, path, "a mapping of study fields")
    if root is None:
        return StudyConfig()
    cfg = _section(StudyConfig, root, "study", path)
    check_variants(cfg.variants)
    if not 0 < cfg.finetune_fraction < 1 or cfg.steps < 2:
        raise ConfigError(f"{path}: need steps ≥ 2 and 0 < finetune_fraction < 1")
    return cfg


def load_study(path) -> StudyConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such study config (see convert/study/configs/)")
    cfg = parse_study(path.read_text(), str(path))
    return cfg if cfg.name else dataclasses.replace(cfg, name=path.stem)


def model_config(cfg: StudyConfig, teacher: bool = False) -> ModelConfig:
    """Student widths within the product budget; the teacher's lifts the budget (it is the upper bound)."""
    if teacher:
        return ModelConfig(n_bins=cfg.n_bins, s1_widths=cfg.teacher_s1_widths,
                           s2_widths=cfg.teacher_s2_widths, blocks=cfg.teacher_blocks,
                           max_macs=10**12, max_params=10**9)
    return ModelConfig(n_bins=cfg.n_bins, s1_widths=cfg.student_s1_widths, s2_widths=cfg.student_s2_widths,
                       blocks=cfg.student_blocks)


def train_config(cfg: StudyConfig, model: ModelConfig, steps: int, lr: float | None = None) -> Config:
    """The train.* Config one variant is trained with: the study's data, this model, `steps` steps."""
    data = DataConfig(dataset=cfg.dataset, batch_size=cfg.batch_size, max_train_samples=cfg.max_train_samples)
    train = TrainConfig(name=cfg.name, out_dir=cfg.out_dir, epochs=1, steps_per_epoch=steps,
                        lr=cfg.lr if lr is None else lr, warmup_steps=cfg.warmup_steps, seed=cfg.seed,
                        verbose=0, run_eagerly=cfg.run_eagerly)
    return Config(data=data, model=model, train=train)
