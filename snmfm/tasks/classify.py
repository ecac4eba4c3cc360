"""Classification tasks: `vision-digits` (ViT on 8x8 digits) and `medical-wdbc` (FeatureTransformer
on the 30 WDBC features)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from snmfm.data import tabular
from snmfm.data.splits import TensorData
from snmfm.tasks.base import Batch, Task, argmax_correct
from snmfm.train import TrainConfig


class ClassifyTask(Task):
    kind = "classify"
    n_classes = 2

    def model_overrides(self) -> dict:
        return {"n_classes": self.n_classes}

    def _loss(self, model, batch):
        x, y = batch
        return F.cross_entropy(model(x), y, label_smoothing=0.05)

    def score(self, outputs: torch.Tensor, batch: Batch) -> tuple[int, int]:
        return argmax_correct(outputs, batch.targets)


class VisionDigits(ClassifyTask):
    name = "vision-digits"
    model_name = "vit"
    kind = "classify"
    n_classes = 10
    description = "8x8 handwritten digits (scikit-learn load_digits), ViT classifier, 10 classes"
    train_config = TrainConfig(steps=3000, batch_size=64, lr=2e-3, warmup=100, weight_decay=0.05)

    def data(self, split: str, seed: int = 0) -> TensorData:
        return tabular.digits(split, seed)

    def sample(self, gen, batch_size, step):
        idx = tabular.digit_indices("train")
        pick = idx[torch.randint(0, len(idx), (batch_size,), generator=gen).numpy()]
        images, labels = tabular.digit_images(pick)
        return tabular.shift_images(images, gen), labels

    def info(self) -> dict:
        return {"dataset": "sklearn.datasets.load_digits", "split": tabular.DIGITS_SPLIT,
                "sizes": {s: len(tabular.digit_indices(s)) for s in ("train", "calib", "test")},
                "input": "images [N,1,8,8], pixel/16"}


class MedicalWDBC(ClassifyTask):
    name = "medical-wdbc"
    model_name = "features"
    kind = "classify"
    n_classes = 2
    description = ("Wisconsin diagnostic breast cancer (scikit-learn load_breast_cancer), "
                   "FeatureTransformer over 30 feature tokens, malignant/benign")
    train_config = TrainConfig(steps=300, batch_size=64, lr=5e-4, warmup=30, weight_decay=0.05)

    def model_overrides(self) -> dict:
        return {"n_classes": 2, "n_features": 30}

    def data(self, split: str, seed: int = 0) -> TensorData:
        return tabular.wdbc(split, seed)

    def sample(self, gen, batch_size, step):
        train = tabular.wdbc("train")
        pick = torch.randint(0, len(train), (batch_size,), generator=gen)
        return train.inputs[0][pick], train.targets[pick]

    def info(self) -> dict:
        return {"dataset": "sklearn.datasets.load_breast_cancer", "split": tabular.WDBC_SPLIT,
                "sizes": {s: len(tabular.wdbc_indices(s)) for s in ("train", "calib", "test")},
                "input": "features [N,30] standardised with train-split mean/std",
                "classes": ["malignant", "benign"]}
