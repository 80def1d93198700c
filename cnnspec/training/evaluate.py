"""`cnnspec evaluate`: a classifier's accuracy on labelled data, per class, and its
confusion matrix, computed with onnxruntime (no PyTorch needed)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BATCH = 256


@dataclass
class Evaluation:
    classes: list[str]
    confusion: np.ndarray  # [true class, predicted class] -> count

    @property
    def examples(self) -> int:
        return int(self.confusion.sum())

    @property
    def accuracy(self) -> float:
        return float(np.trace(self.confusion) / max(self.examples, 1))

    def per_class(self) -> list[tuple[str, int, int]]:
        """(class, correct, examples of it)."""
        return [
            (c, int(self.confusion[i, i]), int(self.confusion[i].sum())) for i, c in enumerate(self.classes)
        ]

    def to_json(self) -> dict:
        return {
            "examples": self.examples,
            "accuracy": self.accuracy,
            "classes": [
                {"class": c, "correct": k, "examples": n, "accuracy": k / n if n else None}
                for c, k, n in self.per_class()
            ],
            "confusion": self.confusion.tolist(),
        }


def evaluate(session, data, classes: int, mean=None, std=None, batch: int = BATCH) -> Evaluation:
    """`data`: arrays (train.Dataset) or a listed class folder (data.FolderData), read `batch`
    examples at a time and normalised with `mean` and `std` (what the model was trained with)."""
    from ..deploy.runtime import run_examples
    from ..inputs import load_image
    from .data import FolderData, Preprocess

    confusion = np.zeros((classes, classes), np.int64)
    for start in range(0, len(data.y), batch):
        if isinstance(data, FolderData):
            x = np.stack([load_image(p, data.shape, mean, std) for p in data.paths[start : start + batch]])
        else:
            x = Preprocess(_tuple(mean), _tuple(std)).normalise(
                np.asarray(data.x[start : start + batch], np.float32)
            )
        scores = run_examples(session, x)[0]
        np.add.at(confusion, (data.y[start : start + batch], scores.argmax(1)), 1)
    names = list(data.classes) if len(data.classes) == classes else [str(i) for i in range(classes)]
    return Evaluation(names, confusion)


def table(evaluation: Evaluation, limit: int = 20) -> str:
    lines = [
        f"accuracy: {evaluation.accuracy:.4f} ({np.trace(evaluation.confusion):,} of {evaluation.examples:,})"
    ]
    lines.append(f"{'class':<16} {'accuracy':>9} {'correct':>8} {'of':>6}")
    for name, correct, total in evaluation.per_class():
        shown = f"{correct / total:.4f}" if total else "-"
        lines.append(f"{name[:16]:<16} {shown:>9} {correct:>8,} {total:>6,}")
    k = len(evaluation.classes)
    if k <= limit:
        width = max(4, len(str(int(evaluation.confusion.max(initial=0)))) + 1)
        lines.append("confusion (rows: true class, columns: predicted)")
        lines.append(" " * 16 + "".join(f"{c[: width - 1]:>{width}}" for c in evaluation.classes))
        for name, row in zip(evaluation.classes, evaluation.confusion):
            lines.append(f"{name[:16]:<16}" + "".join(f"{v:>{width}}" for v in row))
    else:
        lines.append(f"confusion matrix: {k} classes (see --format json)")
    return "\n".join(lines)


def _tuple(values) -> tuple[float, ...] | None:
    return tuple(float(v) for v in values) if values is not None else None
