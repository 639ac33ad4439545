"""The driver's handling of results (its Spark path is covered end to end)."""

import numpy as np

from sparkrunner.inside import driver


def test_results_with_numpy_values_and_nan_are_saved():
    result = {"auc": float("nan"), "accuracy": np.float64(0.8), "counts": np.array([1, 2]), "n": np.int64(3)}
    assert driver.to_json(result) == '{"auc": null, "accuracy": 0.8, "counts": [1, 2], "n": 3}'


def test_a_result_that_is_not_json_gives_none():
    assert driver.to_json({"model": object()}) is None
