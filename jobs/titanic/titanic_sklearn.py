"""Titanic survival: a plain scikit-learn model, ModelOp style, scored by sparkrunner at Spark scale.

Nothing here is Spark code. The training job calls ``train`` with three lists of asset dicts
(inputs, outputs, attachments) on the driver: it fits a pipeline on the training CSV and pickles
it to the job's output, ``titanic-sklearn.pkl``. The scoring jobs name that pickle as the model's
attachment; sparkrunner calls ``begin`` once in every Python worker, where the pickle sits in the
working directory, then either

* ``action(passenger)`` for each record (a dict), the ModelOp record form (``# modelop.score``), or
* ``predict(passengers: pd.DataFrame)`` for each Arrow batch (the job names it in ``scoreFunction``),

over every row of the input, on every executor. The job's input schema rejects malformed rows
(``?`` in Age) before they reach the model; sparkrunner writes them, with the reason, beside the
scores.
"""

import os
import pickle
from urllib.parse import urlparse

import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

MODEL_FILE = "titanic-sklearn.pkl"
CATEGORICAL = ["Sex", "Embarked"]
NUMERIC = ["Pclass", "Age", "SibSp", "Parch", "Fare"]
FEATURES = CATEGORICAL + NUMERIC

MODEL = None  # the fitted pipeline, loaded by begin()


# modelop.init
def begin():
    global MODEL
    if not os.path.exists(MODEL_FILE):
        return  # the training job: nothing trained yet
    with open(MODEL_FILE, "rb") as f:
        MODEL = pickle.load(f)


# modelop.score
def action(passenger):
    features = pd.DataFrame([passenger], columns=FEATURES)
    probability = float(MODEL.predict_proba(_typed(features))[0, 1])
    # PassengerId is the job's idField: sparkrunner adds it to the output.
    yield {"Survived": passenger["Survived"], "probability": probability, "prediction": int(probability > 0.5)}


def predict(passengers: pd.DataFrame) -> pd.DataFrame:
    probability = MODEL.predict_proba(_typed(passengers[FEATURES]))[:, 1]
    # The input's index is kept, so sparkrunner matches each row to its PassengerId.
    return pd.DataFrame({"Survived": passengers["Survived"], "probability": probability,
                         "prediction": (probability > 0.5).astype("int64")}, index=passengers.index)


# modelop.train
def train(inputs, outputs, attachments):
    data = pd.read_csv(_local_path(inputs[0]["fileUrl"]))
    data["Age"] = pd.to_numeric(data["Age"], errors="coerce")  # '?' in the raw data
    model = Pipeline([
        ("features", ColumnTransformer([
            ("categorical", make_pipeline(SimpleImputer(strategy="most_frequent"),
                                          OneHotEncoder(handle_unknown="ignore")), CATEGORICAL),
            ("numeric", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), NUMERIC),
        ])),
        ("classifier", LogisticRegression(C=1.0, max_iter=1000)),
    ])
    model.fit(_typed(data[FEATURES]), data["Survived"])
    with open(_local_path(outputs[0]["fileUrl"]), "wb") as f:
        pickle.dump(model, f)
    return {"trainingRows": len(data), "trainingAccuracy": float(model.score(_typed(data[FEATURES]), data["Survived"]))}


def _typed(frame):
    """Numbers as floats and missing categories as NaN, whatever the record held."""
    frame = frame.copy()
    frame[NUMERIC] = frame[NUMERIC].astype("float64")
    frame[CATEGORICAL] = frame[CATEGORICAL].astype(object).where(frame[CATEGORICAL].notna(), float("nan"))
    return frame


def _local_path(url):
    """The training job reads and writes local files (file:// URLs or plain paths)."""
    parsed = urlparse(url)
    return parsed.path if parsed.scheme in ("", "file") else url
