"""Datasets of the built-in tasks: small, public, and all on this machine (no downloads).

* digits  -- scikit-learn's copy of the UCI optical digits (8x8 images, values 0..16)
* wdbc    -- scikit-learn's copy of the Wisconsin Diagnostic Breast Cancer table (30 features)
* stdlib  -- the running interpreter's own standard-library source, as bytes
* vqa     -- digit images paired with generated questions and one-word answers

Every split is a pure function of the data and a fixed split seed, and the three splits
(train / calib / test) are disjoint in their *sources* (images, rows, modules), so a model trained
with any seed never saw a test example.  `TensorData.ids` names the sources of each example.
"""
from snmfm.data.splits import SPLITS, TensorData, split_indices, split_of_name

__all__ = ["SPLITS", "TensorData", "split_indices", "split_of_name"]
