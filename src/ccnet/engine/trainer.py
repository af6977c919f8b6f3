"""Iteration-based training: SGD + poly LR, main + aux (+ OHEM, + consistency) loss, mixed
precision, DDP via ``torchrun``, atomic checkpoints with exact resume, progress bar, JSON-lines
and TensorBoard logs, evaluation and a few prediction images at the end."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import yaml
from PIL import Image
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from ccnet.config import Config, ConfigError, config_from_dict, flatten_keys
from ccnet.data.info import DatasetInfo
from ccnet.engine.build import build_criterion, build_model, build_train_dataset, build_val_dataset, infer_kwargs
from ccnet.engine.checkpoint import (
    FORMAT_VERSION,
    check_compatible,
    load_checkpoint,
    rng_state,
    set_rng_state,
)
from ccnet.engine.distributed import DistContext, all_reduce_mean, barrier, init_distributed
from ccnet.engine.evaluate import evaluate
from ccnet.engine.inference import infer
from ccnet.engine.metrics import SegmentationMetrics
from ccnet.engine.sampling import SeededDataset, TrainSampler
from ccnet.errors import CheckpointError, InputError, LossDivergedError, RunFolderError
from ccnet.files import atomic_save, atomic_write_text
from ccnet.nn import convert_sync_batchnorm

logger = logging.getLogger(__name__)


def lr_factor(iteration: int, config: Config) -> float:
    """LR multiplier at ``iteration``: the schedule (``optim.schedule``), times a linear warm-up.

    ``poly``: ``(1 - it / iterations) ** power`` down to ``min_lr``; ``step``: ``step_factor`` to the
    power of the number of ``optim.steps`` already reached (Detectron's Mask R-CNN schedule)."""
    optim = config.optim
    if optim.schedule == "poly":
        progress = min(iteration / max(optim.iterations, 1), 1.0)
        base = optim.lr
        factor = ((base - optim.min_lr) * (1 - progress) ** optim.power + optim.min_lr) / base
    else:  # "step" (optim.schedule's allowed values are checked when the config is loaded)
        factor = optim.step_factor ** sum(iteration >= step for step in optim.steps)
    if iteration < optim.warmup_iters:
        factor *= optim.warmup_ratio + (1 - optim.warmup_ratio) * iteration / optim.warmup_iters
    return factor


def consistency_weight(iteration: int, config: Config) -> float:
    """Weight of the consistency loss at (1-based) ``iteration``: ``iteration / N`` over the first
    ``N = loss.consistency_warmup_iters`` iterations, then 1."""
    warmup = config.loss.consistency_warmup_iters  # >= 0, checked when the config is loaded
    return min(1.0, iteration / warmup) if warmup else 1.0


def parameter_groups(model: nn.Module, lr: float, head_lr_mult: float) -> list[dict[str, Any]]:
    """Trainable parameters as two SGD groups: the backbone at ``lr``, the rest (heads) at
    ``lr * head_lr_mult``. The poly schedule scales both alike."""
    backbone = {id(p) for p in model.backbone.parameters()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in trainable if id(p) in backbone], "lr": lr},
        {"params": [p for p in trainable if id(p) not in backbone], "lr": lr * head_lr_mult},
    ]


# What a run writes into its folder: ``overwrite`` deletes exactly these, nothing of the user's.
RUN_FILES = ("checkpoints", "model", "predictions", "tensorboard", "config.yaml", "log.jsonl", "metrics.json")
# Any of these means the folder holds a run (started or finished) that a fresh start would destroy.
RUN_MARKERS = ("checkpoints/latest.pt", "log.jsonl", "metrics.json", "model")
# Settings a resumed run may change (where the data are, how fast they load, what is evaluated):
# named when they differ. Every other data.* / video.* key decides what is trained on: refused.
RESUME_FREE_DATA = ("data.root", "data.workers", "data.val_split", "data.max_val_samples",
                    "data.synthetic_val_samples", "video.eval_clip_stride", "video.frames_root")


def existing_run(path: str | Path) -> list[str]:
    """The files of a run already in the folder ``path`` (empty: none)."""
    return [name for name in RUN_MARKERS if (Path(path) / name).exists()]



def resume_changes(stored: Config, config: Config) -> tuple[list[str], list[str]]:
    """The settings a resumed run changes, as ``key old -> new``: those that change the training
    data (refused) and the others (named when resuming). ``model.*`` is `check_compatible`'s."""
    theirs, ours = flatten_keys(stored.to_dict()), flatten_keys(config.to_dict())
    refused, named = [], []
    for key, value in ours.items():
        old = theirs.get(key)
        if old == value or key.startswith("model."):
            continue
        change = f"{key} {old!r} -> {value!r}"
        free = key in RESUME_FREE_DATA and not (key.endswith("root") and (old is None) != (value is None))
        (refused if key.split(".")[0] in ("data", "video") and not free else named).append(change)
    return refused, named


def _class_list(info: DatasetInfo, shown: int = 6) -> str:
    names = list(info.class_names)
    return ", ".join(names[:shown]) + (f", ... {len(names) - shown} more" if len(names) > shown else "")


def check_same_classes(model_info: DatasetInfo, dataset_info: DatasetInfo, path: str | Path) -> None:
    """A model trained on one label set cannot be scored on (or continue training on) another."""
    if model_info.num_classes != dataset_info.num_classes:
        raise ConfigError(
            f"{path}: the model has {model_info.num_classes} classes ({_class_list(model_info)}; trained on "
            f"{model_info.name!r}) but dataset {dataset_info.name!r} has {dataset_info.num_classes} "
            f"({_class_list(dataset_info)}); use the data it was trained on (its own config is the default: "
            f"drop the data.* overrides, or give that dataset's config and data.root)"
        )


def _head_name(config: Config) -> str:
    context = config.model.context
    return f"R={config.model.recurrence}" if context == "rcca" else f"context={context}"


@dataclass
class TrainResult:
    output_dir: Path
    iteration: int
    metrics: SegmentationMetrics | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


class Trainer:
    """Trains ``config`` into ``output_dir`` (a fresh ``runs/<name>-<time>`` when not given).

    ``resume``: a checkpoint path, or ``"auto"`` for ``output_dir/checkpoints/latest.pt`` when it
    exists. ``stop_after``: stop (with a checkpoint) after that iteration, as if interrupted.
    A folder that already holds a run is refused unless ``resume`` continues that run or
    ``overwrite`` deletes its files (`RUN_FILES`) once the new run has been built. A
    checkpoint whose data settings differ, or which is past this run's schedule, is refused.
    """

    def __init__(
        self,
        config: Config,
        *,
        output_dir: str | Path | None = None,
        resume: str | Path | None = None,
        stop_after: int | None = None,
        progress: bool = True,
        overwrite: bool = False,
    ) -> None:
        self.config = config
        self.ctx: DistContext = init_distributed(config.device)
        self.output_dir = self._resolve_output_dir(output_dir)
        self.resume = resume
        self.overwrite = overwrite
        self.stop_after = stop_after
        self.progress = progress and self.ctx.is_main
        self.checkpoint_path = self.output_dir / "checkpoints" / "latest.pt"
        self.writer = None
        self._check_output_dir()

    # -- set-up -------------------------------------------------------------------------------
    def _resolve_output_dir(self, output_dir: str | Path | None) -> Path:
        if output_dir is None:
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            name = [f"{self.config.run_name()}-{stamp}"]
            if self.ctx.distributed:
                dist.broadcast_object_list(name, src=0)
            output_dir = Path(self.config.output_dir) / name[0]
        return Path(output_dir)

    def _check_output_dir(self) -> None:
        """Refuse, before anything is built, a run folder whose run this one would destroy."""
        path, resume = self.output_dir, self.resume
        if path.exists() and not path.is_dir():
            raise RunFolderError(f"{path}: is a file, not a run folder")
        own = resume == "auto" or (resume is not None and Path(resume).absolute() == self.checkpoint_path.absolute())
        if self.overwrite:
            if own or (resume is not None and path.absolute() in Path(resume).absolute().parents):
                raise InputError(f"{path}: --overwrite deletes the run there and --resume continues it; give one")
            return
        found = existing_run(path)
        if not found:
            return
        if resume is None:
            raise RunFolderError(f"{path}: holds a run ({', '.join(found)}); pass --resume auto to continue it, "
                                 f"or --overwrite to delete it and start over")
        if not own:
            raise RunFolderError(f"{path}: holds another run ({', '.join(found)}); continuing {resume} there "
                                 f"would replace it: give a new --output, or --overwrite")
        if not self.checkpoint_path.is_file() and {"metrics.json", "model"} & set(found):
            raise RunFolderError(f"{path}: holds a finished run ({', '.join(found)}) but no "
                                 f"checkpoints/latest.pt to continue; pass --overwrite to delete it and start over")

    def _clear_previous_run(self) -> None:
        """``overwrite``: delete the files of the run in the folder (only the files a run writes)."""
        removed = []
        if self.ctx.is_main:
            for name in RUN_FILES:
                target = self.output_dir / name
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)
                elif target.exists() or target.is_symlink():
                    target.unlink()
                else:
                    continue
                removed.append(name)
            if removed:
                logger.info(f"--overwrite: deleted the previous run's {', '.join(removed)} in {self.output_dir}")
        barrier()

    def _amp_dtype(self) -> torch.dtype | None:
        amp = self.config.amp
        if amp == "auto":
            return torch.float16 if self.ctx.device.type == "cuda" else None
        return {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]

    def _build(self) -> None:
        config, ctx = self.config, self.ctx
        self.train_set, self.val_set = self._build_datasets()
        self.info: DatasetInfo = self.train_set.info
        torch.manual_seed(config.seed + ctx.rank)
        np.random.seed((config.seed + ctx.rank) % 2**32)  # noqa: NPY002
        model = self._build_model().to(ctx.device)
        if config.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.ddp = (
            DistributedDataParallel(
                model,
                device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None,
                find_unused_parameters=self._find_unused_parameters(),
            )
            if ctx.distributed
            else model
        )
        self.criterion = self._build_criterion()
        optim = config.optim
        if optim.schedule == "step" and list(optim.steps) != sorted(optim.steps):
            raise ConfigError(f"config key 'optim.steps' must be increasing, got {optim.steps}")
        lr_factor(0, config)  # an unknown schedule fails here, not at the first step
        self.optimizer = torch.optim.SGD(
            parameter_groups(model, optim.lr, optim.head_lr_mult),
            lr=optim.lr,
            momentum=optim.momentum,
            weight_decay=optim.weight_decay,
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda it: lr_factor(it, config))
        self.amp_dtype = self._amp_dtype()
        self.scaler = torch.amp.GradScaler(ctx.device.type, enabled=self.amp_dtype == torch.float16)
        self.start_iter = 0
        self.history: list[dict[str, Any]] = []
        self._resume_note = ""

    # Task hooks: the semantic-segmentation defaults; ccnet.detection.trainer overrides them.
    def _build_datasets(self) -> tuple[Any, Any]:
        return build_train_dataset(self.config), build_val_dataset(self.config)

    def _build_model(self) -> nn.Module:
        """The model on the CPU, with pretrained weights and SyncBatchNorm where configured."""
        config = self.config
        model: nn.Module = build_model(config, self.info.num_classes)
        if config.pretrained_backbone and self.resume is None:
            from ccnet.interop import init_backbone_from

            init_backbone_from(model, config.pretrained_backbone)
        if self.ctx.distributed and config.model.norm == "bn":  # CUDA: PyTorch's fused SyncBatchNorm
            model = convert_sync_batchnorm(model, native=self.ctx.device.type == "cuda")
        return model

    def _find_unused_parameters(self) -> bool:
        model = self.config.model
        return model.context == "rcca" and model.recurrence == 0  # the attention is skipped

    def _build_criterion(self) -> Any:
        return build_criterion(self.config, self.info.ignore_index)

    def _check_compatible(self, checkpoint: dict[str, Any], path: str | Path) -> None:
        check_compatible(checkpoint, self.config, path)

    def _collate(self) -> Any:
        """The DataLoader's ``collate_fn`` (None: PyTorch's default stacking)."""
        return None

    def _describe(self) -> str:
        config = self.config
        video = f" (attention {config.video.attention})" if config.is_video else ""
        return f"{type(self.model).__name__} {config.model.backbone} {_head_name(config)}{video}"

    def _forward_loss(self, batch: dict[str, Any], iteration: int = 0) -> tuple[
            torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Total loss, the scalar logs and the differentiable loss parts (``ce``, ``consistency``)
        of one training batch (already under autocast)."""
        device = self.ctx.device
        images = batch["image"].to(device, non_blocking=True)
        labels = batch["label"].to(device, non_blocking=True)
        if self.config.channels_last and images.dim() == 4:  # clips: CCNet3D folds them into frames
            images = images.contiguous(memory_format=torch.channels_last)
        outputs = self.ddp(images)
        if not self.config.loss.consistency:
            return (*self.criterion(outputs, labels), {})
        return self.criterion(outputs, labels, consistency_weight=consistency_weight(iteration, self.config),
                              return_parts=True)

    def _restore(self) -> None:
        path = self.resume
        if path == "auto":
            if not self.checkpoint_path.is_file():
                self._resume_note = f"no checkpoint in {self.checkpoint_path.parent} yet: starting at iteration 0"
                return
            path = self.checkpoint_path
        if path is None:
            return
        checkpoint = load_checkpoint(path, map_location=self.ctx.device)
        self._check_compatible(checkpoint, path)
        if "info" in checkpoint:
            check_same_classes(DatasetInfo.from_dict(checkpoint["info"]), self.info, path)
        for key in ("optimizer", "scheduler", "scaler", "iteration", "rng"):
            if key not in checkpoint:
                raise CheckpointError(f"{path}: not a training checkpoint (no {key!r} entry); cannot resume from it")
        iteration, iterations = int(checkpoint["iteration"]), self.config.optim.iterations
        if iteration > iterations:
            raise ConfigError(f"{path}: checkpoint is at iteration {iteration}, beyond this run's "
                              f"optim.iterations={iterations}: it is another run's; resume it with its own config")
        named: list[str] = []
        if "config" in checkpoint:
            refused, named = resume_changes(config_from_dict(checkpoint["config"]), self.config)
            if refused:
                raise ConfigError(f"{path}: checkpoint was trained with other data settings ({'; '.join(refused)}); "
                                  f"resume with the same data, or train into a new --output without --resume")
        changed = f" (changed since: {'; '.join(named)})" if named else ""
        self._resume_note = f"resumed from iteration {iteration} of {path}{changed}"
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        if checkpoint["scaler"]:  # empty when written without float16 AMP (say, on a CPU): keep the fresh scale
            self.scaler.load_state_dict(checkpoint["scaler"])
        self.start_iter = int(checkpoint["iteration"])
        states = checkpoint["rng"]
        set_rng_state(states[self.ctx.rank] if self.ctx.rank < len(states) else states[0])
        self.history = list(checkpoint.get("history", []))

    def _loader(self) -> DataLoader:
        batch = self.config.data.batch_size
        sampler = TrainSampler(
            len(self.train_set),
            seed=self.config.seed,
            rank=self.ctx.rank,
            world_size=self.ctx.world_size,
            start=self.start_iter * batch,
        )
        workers = self.config.data.workers
        return DataLoader(
            SeededDataset(self.train_set),
            batch_size=batch,
            sampler=sampler,
            num_workers=workers,
            pin_memory=self.ctx.device.type == "cuda",
            drop_last=True,
            persistent_workers=workers > 0,
            generator=torch.Generator(),  # keep the global RNG untouched by the loader
            collate_fn=self._collate(),
        )

    # -- checkpoints and logs -------------------------------------------------------------------
    def _save_checkpoint(self, iteration: int) -> None:
        states = [rng_state()]
        if self.ctx.distributed:
            gathered: list[Any] = [None] * self.ctx.world_size
            dist.all_gather_object(gathered, states[0])
            states = gathered
        if self.ctx.is_main:
            atomic_save(
                {
                    "format": FORMAT_VERSION,
                    "iteration": iteration,
                    "model": self.model.state_dict(),
                    "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict(),
                    "scaler": self.scaler.state_dict(),
                    "rng": states,
                    "config": self.config.to_dict(),
                    "info": self.info.to_dict(),
                    "history": self.history,
                },
                self.checkpoint_path,
            )
        barrier()

    def _log(self, record: dict[str, Any]) -> None:
        self.history.append(record)
        if not self.ctx.is_main:
            return
        with open(self.output_dir / "log.jsonl", "a") as handle:
            handle.write(json.dumps(record) + "\n")
        if self.writer is not None:
            prefix = "val" if record.get("type") == "eval" else "train"
            for key, value in record.items():
                if isinstance(value, (int, float)) and key not in ("iteration",):
                    self.writer.add_scalar(f"{prefix}/{key}", value, record["iteration"])

    def _open_writer(self) -> None:
        """The run's folder, config and logs. ``log.jsonl`` starts as the records of the checkpoint
        resumed from (none for a fresh run): records of an interrupted run past its checkpoint,
        or of an earlier run, are not mixed in."""
        self.writer = None
        if self.ctx.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            (self.output_dir / "config.yaml").write_text(yaml.safe_dump(self.config.to_dict(), sort_keys=False))
            atomic_write_text(self.output_dir / "log.jsonl", "".join(json.dumps(r) + "\n" for r in self.history))
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(self.output_dir / "tensorboard"))

    def _remove_start_up_files(self, created: bool) -> None:
        """A fresh run that failed before its first step leaves nothing behind (its folder too,
        when this run created it and nothing else is in it)."""
        if not self.ctx.is_main:
            return
        for name in ("config.yaml", "log.jsonl", "tensorboard"):
            target = self.output_dir / name
            if target.is_dir():
                shutil.rmtree(target, ignore_errors=True)
            else:
                target.unlink(missing_ok=True)
        if created:
            with contextlib.suppress(OSError):  # not empty: something else was written there
                os.rmdir(self.output_dir)

    # -- the loop ---------------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        self._build()
        self._restore()
        if self.overwrite:
            self._clear_previous_run()
        created = not self.output_dir.exists()
        self._open_writer()
        self._steps_done = 0
        try:
            return self._fit()
        except BaseException as error:
            if self.start_iter == 0 and self._steps_done == 0 and not isinstance(error, FloatingPointError):
                if self.writer is not None:
                    self.writer.close()
                    self.writer = None
                self._remove_start_up_files(created)
            raise
        finally:
            if self.writer is not None:
                self.writer.close()

    def _fit(self) -> TrainResult:
        config, ctx = self.config, self.ctx
        end = config.optim.iterations if self.stop_after is None else min(self.stop_after, config.optim.iterations)
        if ctx.is_main:
            params = sum(p.numel() for p in self.model.parameters()) / 1e6
            logger.info(
                f"training {config.run_name()}: {self._describe()}, "
                f"{params:.1f}M params, on {self.info.name} ({self.info.num_classes} classes), "
                f"{config.optim.iterations} iterations, "
                f"batch {config.data.batch_size} x {ctx.world_size} on {ctx.device}"
                f"{f' ({ctx.backend})' if ctx.backend else ''} -> {self.output_dir}"
            )
            if self._resume_note:
                logger.info(self._resume_note)
        bar = tqdm(total=config.optim.iterations, initial=self.start_iter, disable=not self.progress,
                   desc="train", dynamic_ncols=True, unit="it")
        self.ddp.train()
        data_iter = iter(self._loader()) if self.start_iter < end else iter(())
        window_start, data_time = time.perf_counter(), 0.0
        for iteration in range(self.start_iter + 1, end + 1):
            fetch_start = time.perf_counter()
            batch = next(data_iter)
            data_time += time.perf_counter() - fetch_start
            logs = self._step(batch, iteration)
            self._steps_done += 1
            bar.update(1)
            if iteration % config.log_interval == 0 or iteration == end:
                logs = {k: v.item() for k, v in all_reduce_mean(logs).items()}
                elapsed = time.perf_counter() - window_start
                steps = config.log_interval if iteration % config.log_interval == 0 else iteration % config.log_interval
                record = {"iteration": iteration, "lr": self.optimizer.param_groups[0]["lr"], **logs,
                          "time_per_iter": elapsed / steps, "data_time": data_time / steps}
                self._log(record)
                bar.set_postfix(loss=f"{logs['loss']:.4f}", lr=f"{record['lr']:.2e}")
                window_start, data_time = time.perf_counter(), 0.0
            if config.eval.interval and iteration % config.eval.interval == 0 and iteration < config.optim.iterations:
                self._evaluate(iteration)
                self.ddp.train()
            if iteration % config.checkpoint_interval == 0 or iteration == end:
                self._save_checkpoint(iteration)
        bar.close()
        iteration = max(end, self.start_iter)
        metrics = None
        if iteration >= config.optim.iterations:
            metrics = self._evaluate(iteration, final=True)
            self._save_checkpoint(iteration)
            self._save_model()
            self._visualize()
        return TrainResult(self.output_dir, iteration, metrics, self.history)

    def _step(self, batch: Any, iteration: int) -> dict[str, torch.Tensor]:
        device = self.ctx.device
        with torch.autocast(device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
            loss, logs, parts = self._forward_loss(batch, iteration)
        if not torch.isfinite(loss):
            raise LossDivergedError(
                f"iteration {iteration}: loss is {loss.item()}; the last good checkpoint is {self.checkpoint_path}"
            )
        self.optimizer.zero_grad(set_to_none=True)
        # On logged iterations of one process, the consistency term's gradient apart from the
        # cross-entropy's (one extra backward through that term): how the two pull on the weights.
        split = "consistency" in parts and self.ctx.world_size == 1 and iteration % self.config.log_interval == 0
        params = [p for p in self.model.parameters() if p.requires_grad]
        if split:
            term = self.scaler.scale(parts["consistency"])
            grads = torch.autograd.grad(term, params, retain_graph=True, allow_unused=True)
            scale = self.scaler.get_scale() if self.scaler.is_enabled() else 1.0
            consistency_grads = [torch.zeros_like(p) if g is None else g.float() / scale for p, g in zip(
                params, grads, strict=True)]
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        if split:
            logs = {**logs, **_gradient_split(params, consistency_grads)}
        max_norm = self.config.optim.clip_grad_norm
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm if max_norm else float("inf"))
        logs = {**logs, "grad_norm": grad_norm.detach()}
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return {k: v for k, v in logs.items() if v.dim() == 0}

    def _evaluate(self, iteration: int, final: bool = False) -> SegmentationMetrics:
        confusion = evaluate(
            self.model,
            self.val_set,
            num_classes=self.info.num_classes,
            ignore_index=self.info.ignore_index,
            device=self.ctx.device,
            infer_kwargs=infer_kwargs(self.config, self.info),
            progress=self.progress,
        )
        metrics = confusion.compute()
        summary = {"iteration": iteration, "type": "eval", "mIoU": metrics.miou,
                   "aAcc": metrics.pixel_accuracy, "mAcc": metrics.mean_accuracy,
                   "iou": metrics.to_dict()["iou"]}  # per class (learning curves of ccnet reproduce)
        self._log(summary)
        if self.ctx.is_main:
            logger.info(metrics.format_table(self.info.class_names))
            if final:
                result = {"iteration": iteration, **metrics.to_dict(), "class_names": list(self.info.class_names)}
                atomic_write_text(self.output_dir / "metrics.json", json.dumps(result, indent=2))
        return metrics

    def _save_model(self) -> None:
        """The trained model in ccnet's own format (safetensors + config.json with class names,
        the dataset and, for video, the clip length and attention mode inference uses)."""
        if self.ctx.is_main:
            config = self.config
            inference: dict[str, Any] = {"dataset": config.data.dataset}
            if config.is_video:
                inference.update(clip_length=config.video.clip_length, attention=config.video.attention)
            self.model.save_pretrained(
                self.output_dir / "model",
                class_names=self.info.class_names,
                palette=self.info.palette,
                mean=config.data.mean,
                std=config.data.std,
                inference=inference,
            )

    def _visualize(self) -> None:
        """Image | ground truth | prediction strips for the first validation samples (clips:
        one row per frame)."""
        if not self.ctx.is_main or self.config.num_visualizations <= 0:
            return
        out_dir = self.output_dir / "predictions"
        out_dir.mkdir(parents=True, exist_ok=True)
        kwargs = infer_kwargs(self.config, self.info)
        for i in range(min(self.config.num_visualizations, len(self.val_set))):
            sample = self.val_set[i]
            image, label = self.val_set.load(i)
            probs = infer(self.model, sample["image"][None].to(self.ctx.device),
                          num_classes=self.info.num_classes, **kwargs)
            pred = probs.argmax(1)[0].cpu().numpy().astype(np.uint8)
            if pred.ndim == 2:  # an image: a clip of one frame
                image, label, pred = image[None], label[None], pred[None]
            strip = np.concatenate([np.concatenate([im, self.info.colorize(lb), self.info.colorize(pr)], axis=1)
                                    for im, lb, pr in zip(image, label, pred, strict=True)], axis=0)
            Image.fromarray(strip).save(out_dir / f"{sample['name']}.png")
            if self.writer is not None:
                self.writer.add_image(f"predictions/{i}", strip, dataformats="HWC")


def _gradient_split(params: list[torch.Tensor], consistency: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Norms of the cross-entropy's and the consistency term's gradients (the total in ``.grad``
    minus the consistency part) and their cosine, before clipping."""
    ce_sq = cons_sq = dot = torch.zeros((), dtype=torch.float64, device=consistency[0].device)
    for p, c in zip(params, consistency, strict=True):
        total = torch.zeros_like(c) if p.grad is None else p.grad.detach().float()
        ce = (total - c).double()
        c = c.double()
        ce_sq, cons_sq, dot = ce_sq + ce.square().sum(), cons_sq + c.square().sum(), dot + (ce * c).sum()
    ce_norm, cons_norm = ce_sq.sqrt(), cons_sq.sqrt()
    cosine = dot / (ce_norm * cons_norm).clamp_min(1e-30)
    return {"grad_norm_ce": ce_norm.float(), "grad_norm_consistency": cons_norm.float(), "grad_cosine": cosine.float()}


def train(config: Config, **kwargs: Any) -> TrainResult:
    """Train ``config`` (see `Trainer` for the keyword arguments)."""
    return Trainer(config, **kwargs).fit()


