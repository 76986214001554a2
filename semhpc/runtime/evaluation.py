"""Distributed evaluation: every rank scores its shard, the confusion matrix is summed over ranks.

Summing a confusion matrix (plus loss and top-5 counts) is exact, so the result does not depend
on how the split was sharded; ranks may hold different numbers of images.
"""

from __future__ import annotations

import numpy as np


def evaluate(model, dataset, num_classes: int, hvd, class_names=None) -> dict:
    """Top-1, top-5, loss, per-class precision/recall/F1 and the confusion matrix, over all ranks."""
    import tensorflow as tf

    confusion = np.zeros((num_classes, num_classes), np.float64)
    loss_sum = top5 = 0.0
    for images, labels in dataset:
        logits = tf.cast(model(images, training=False), tf.float32)  # bfloat16/float16 under mixed precision
        labels_np = labels.numpy()
        loss_sum += float(tf.reduce_sum(
            tf.keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)))
        k = min(5, num_classes)
        top5 += float(tf.reduce_sum(tf.cast(tf.math.in_top_k(labels, logits, k), tf.float32)))
        np.add.at(confusion, (labels_np, np.argmax(logits.numpy(), axis=-1)), 1)
    totals = hvd.allreduce(tf.constant(np.concatenate([confusion.ravel(), [loss_sum, top5]])),
                           op=hvd.Sum, name="evaluation").numpy()
    confusion = totals[:-2].reshape(num_classes, num_classes)
    return summarize(confusion, loss_sum=totals[-2], top5_hits=totals[-1], class_names=class_names)


def summarize(confusion: np.ndarray, loss_sum: float, top5_hits: float, class_names=None) -> dict:
    """Metrics from a confusion matrix (rows = true class, columns = predicted)."""
    confusion = np.asarray(confusion, dtype=np.float64)
    n = confusion.sum()
    tp = np.diag(confusion)
    support = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp),
                   where=(precision + recall) > 0)
    names = list(class_names) if class_names else [str(i) for i in range(len(tp))]
    return {
        "images": int(n),
        "accuracy": float(tp.sum() / n) if n else 0.0,
        "top5_accuracy": float(top5_hits / n) if n else 0.0,
        "loss": float(loss_sum / n) if n else 0.0,
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(names, precision, recall, f1, support)
        },
        "confusion": confusion.astype(int).tolist(),
        "classes": names,
    }


def format_report(result: dict) -> str:
    """Per-class table and overall line, as the demo and `semhpc eval` print it."""
    lines = [f"{'class':<26}{'recall (acc)':>13}{'precision':>11}{'f1':>7}{'images':>8}"]
    for name, m in result["per_class"].items():
        lines.append(f"{name:<26}{m['recall']:>13.3f}{m['precision']:>11.3f}{m['f1']:>7.3f}{m['support']:>8d}")
    lines.append(f"{'overall':<26}{result['accuracy']:>13.3f}{'':>11}{'':>7}{result['images']:>8d}"
                 f"   top-5 {result['top5_accuracy']:.3f}")
    return "\n".join(lines)
