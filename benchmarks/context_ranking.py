"""Does criss-cross attention use long-range context? CCNet with R=0, 1, 2 on the synthetic dataset.

Trains one CCNet per recurrence (identical settings, seeds and data order otherwise) on
:class:`ccnet.data.synthetic.SyntheticContextDataset`, evaluates each on the val split (fixed
seed, 64 scenes) and prints mIoU overall, on the context classes (grey objects classified by a
distant key marker) and on the locally-recognisable classes, the accuracy on the grey-object
pixels alone (context pixels outside the key: chance is ~33%), and wall time.

The defaults are the setting found for the 5-minute CPU demo job:

* scenes 192x192 (dataset defaults: key 25% of the side, gap 20%, aligned_prob 0.5);
* ResNet-18 CCNet, deep stem 32-32-64, **output stride 16** (12x12 features: attention learns
  faster over fewer cells, the conv receptive field in pixels is unchanged, a step is ~2.3x
  cheaper than at stride 8), head 64 channels, no auxiliary head;
* SGD momentum 0.9, wd 1e-4, lr 0.05 with poly decay, **RCCA head lr x10**, attention
  **gamma starting at 1** (at 0 it barely moves in 500 steps), batch 8, 500 iterations
  (~3.5-4 min per model on 2 threads).

    .venv/bin/python benchmarks/context_ranking.py            # R = 0, 1, 2; seed 0
    .venv/bin/python benchmarks/context_ranking.py --seed 1 --recurrences 2
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from ccnet.data.synthetic import CONTEXT_CLASSES, LOCAL_CLASSES, SyntheticContextDataset
from ccnet.losses import SegmentationCriterion
from ccnet.models import CCNet


def batches(dataset: SyntheticContextDataset, start: int, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    items = [dataset[start + j] for j in range(batch)]
    return torch.stack([it["image"] for it in items]), torch.stack([it["label"] for it in items])


def dataset_kwargs(args: argparse.Namespace) -> dict:
    return {"key_size": args.key_size, "key_label": args.key_label, "key_gap": args.key_gap,
            "aligned_prob": args.aligned_prob}


def build_model(args: argparse.Namespace, recurrence: int, num_classes: int) -> CCNet:
    return CCNet(
        num_classes,
        backbone="resnet18",
        recurrence=recurrence,
        output_stride=args.output_stride,
        stem=args.stem,
        stem_widths=tuple(args.stem_widths),
        head_channels=args.head_channels,
        aux=args.aux,
        aux_channels=args.head_channels,
        dropout=args.dropout,
    )


def train(args: argparse.Namespace, recurrence: int) -> tuple[CCNet, float, float]:
    torch.manual_seed(args.seed)
    train_set = SyntheticContextDataset("train", size=tuple(args.size), seed=args.seed, **dataset_kwargs(args))
    model = build_model(args, recurrence, train_set.info.num_classes)
    torch.nn.init.constant_(model.head.cca.gamma, args.gamma_init)
    criterion = SegmentationCriterion(aux_weight=0.4 if args.aux else 0.0)
    gamma = [model.head.cca.gamma]
    head = [p for p in model.head.parameters() if p is not gamma[0]]
    rest = [p for p in model.parameters() if all(p is not q for q in head + gamma)]
    optimizer = torch.optim.SGD([{"params": rest, "lr_mult": 1.0},
                                 {"params": head, "lr_mult": args.head_lr_mult},
                                 {"params": gamma, "lr_mult": args.gamma_lr_mult, "weight_decay": 0.0}],
                                lr=args.lr, momentum=0.9, weight_decay=1e-4)
    model.train()
    start = time.perf_counter()
    running = 0.0
    hits = total = 0
    context_ids = torch.tensor(CONTEXT_CLASSES)
    for it in range(args.iters):
        for group in optimizer.param_groups:
            group["lr"] = group["lr_mult"] * args.lr * (1 - it / args.iters) ** 0.9
        images, labels = batches(train_set, it * args.batch, args.batch)
        outputs = model(images)
        loss, _ = criterion(outputs, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        running = 0.9 * running + 0.1 * loss.item() if it else loss.item()
        with torch.no_grad():  # accuracy on the context-class pixels of the training batches
            context = torch.isin(labels, context_ids)
            hits += (outputs["out"].argmax(1)[context] == labels[context]).sum().item()
            total += context.sum().item()
        if args.log_every and (it + 1) % args.log_every == 0:
            gamma = model.head.cca.gamma.item()
            print(f"  R={recurrence} it {it + 1}/{args.iters} loss {running:.3f} gamma {gamma:+.3f} "
                  f"context acc {hits / max(total, 1):.2f} ({time.perf_counter() - start:.0f}s)", flush=True)
            hits = total = 0
    return model, time.perf_counter() - start, running


@torch.no_grad()
def evaluate(model: CCNet, dataset: SyntheticContextDataset, batch: int) -> tuple[np.ndarray, float]:
    """Confusion matrix (rows: truth, columns: prediction) over the non-ignored pixels, and the
    pixel accuracy on the grey objects alone (context-class pixels outside the key marker)."""
    k = dataset.info.num_classes
    confusion = torch.zeros(k * k, dtype=torch.int64)
    grey_hits = grey_total = 0
    model.eval()
    for start in range(0, len(dataset), batch):
        n = min(batch, len(dataset) - start)
        images, labels = batches(dataset, start, n)
        prediction = model(images)["out"].argmax(1)
        valid = labels != dataset.info.ignore_index
        confusion += torch.bincount(labels[valid] * k + prediction[valid], minlength=k * k)
        grey = torch.isin(labels, torch.tensor(CONTEXT_CLASSES))
        for j in range(n):
            ky, kx, ks = dataset.layout(start + j)["key"]
            grey[j, ky:ky + ks, kx:kx + ks] = False
        grey_hits += (prediction[grey] == labels[grey]).sum().item()
        grey_total += grey.sum().item()
    return confusion.view(k, k).numpy(), grey_hits / max(grey_total, 1)


def iou(confusion: np.ndarray) -> np.ndarray:
    tp = np.diag(confusion).astype(np.float64)
    union = confusion.sum(0) + confusion.sum(1) - tp
    return np.where(union > 0, tp / np.maximum(union, 1), np.nan)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--iters", type=int, default=500, help="SGD iterations per model")
    parser.add_argument("--size", type=int, nargs=2, default=(192, 192), metavar=("H", "W"))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0, help="model init and training-data seed")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--recurrences", type=int, nargs="+", default=(0, 1, 2))
    parser.add_argument("--val-samples", type=int, default=64)
    parser.add_argument("--val-seed", type=int, default=0, help="seed of the val split (fixed across runs)")
    parser.add_argument("--head-channels", type=int, default=64)
    parser.add_argument("--stem", choices=("standard", "deep"), default="deep")
    parser.add_argument("--stem-widths", type=int, nargs=3, default=(32, 32, 64))
    parser.add_argument("--output-stride", type=int, default=16)
    parser.add_argument("--aux", action=argparse.BooleanOptionalAction, default=False)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--gamma-init", type=float, default=1.0, help="initial value of the attention's gamma")
    parser.add_argument("--gamma-lr-mult", type=float, default=1.0, help="lr multiplier of gamma (no weight decay)")
    parser.add_argument("--key-size", type=float, default=0.25, help="key marker side / shorter image side")
    parser.add_argument("--key-gap", type=float, default=0.2, help="rows/columns between key and objects / side")
    parser.add_argument("--aligned-prob", type=float, default=0.5,
                        help="probability that one grey object shares rows/columns with the key")
    parser.add_argument("--head-lr-mult", type=float, default=10.0, help="lr multiplier of the RCCA head")
    parser.add_argument("--key-label", choices=("class", "ignore"), default="class")
    parser.add_argument("--log-every", type=int, default=50)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"settings: {vars(args)}", flush=True)

    val_set = SyntheticContextDataset("val", size=tuple(args.size), seed=args.val_seed,
                                      num_samples=args.val_samples, **dataset_kwargs(args))
    names = val_set.info.class_names
    rows = []
    for recurrence in args.recurrences:
        model, train_s, loss = train(args, recurrence)
        start = time.perf_counter()
        confusion, grey_acc = evaluate(model, val_set, batch=16)
        ious = iou(confusion)
        eval_s = time.perf_counter() - start
        row = {
            "R": recurrence, "miou": np.nanmean(ious), "context": np.nanmean(ious[list(CONTEXT_CLASSES)]),
            "local": np.nanmean(ious[list(LOCAL_CLASSES)]), "grey_acc": grey_acc, "loss": loss,
            "gamma": model.head.cca.gamma.item(),
            "train_s": train_s, "eval_s": eval_s, "ious": ious,
        }
        rows.append(row)
        per_class = " ".join(f"{n}={v * 100:.1f}" for n, v in zip(names, ious, strict=True))
        print(f"R={recurrence}: mIoU {row['miou'] * 100:.1f} | {per_class} | grey acc {grey_acc * 100:.1f} | "
              f"train {train_s:.0f}s eval {eval_s:.0f}s", flush=True)

    print(f"\nseed {args.seed}, {args.iters} iters x batch {args.batch} at {args.size[0]}x{args.size[1]}, "
          f"lr {args.lr}, {args.threads} threads")
    print("| model | mIoU | context mIoU | local mIoU | grey-object acc | final loss | gamma | train s | eval s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| R={r['R']} | {r['miou'] * 100:.1f} | {r['context'] * 100:.1f} | {r['local'] * 100:.1f} | "
              f"{r['grey_acc'] * 100:.1f} | {r['loss']:.3f} | {r['gamma']:+.3f} | {r['train_s']:.0f} | "
              f"{r['eval_s']:.1f} |")


if __name__ == "__main__":
    main()
