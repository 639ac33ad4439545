"""Generate a Titanic-like data set, deterministically and offline.

    python jobs/titanic/make_data.py OUTDIR [--seed 1912] [--train-rows 800] [--test-rows 300]

writes OUTDIR/train.csv and OUTDIR/test.csv with the columns

    PassengerId,Pclass,Name,Sex,Age,SibSp,Parch,Fare,Embarked,Survived

The passengers are synthetic. Survival is drawn from a logistic model of sex, class and age (plus
a bonus for children). The best possible classifier reaches an accuracy of about 0.83 and an AUC
of about 0.91, so a logistic regression on these columns lands well above 0.75 and 0.8.
Two kinds of dirt are left in on purpose:

* about 5% of ``Age`` values are the literal ``?`` (a malformed number, not an empty field): under
  Spark 4's default ANSI mode ``cast('?' as double)`` raises, with ``spark.sql.ansi.enabled=false``
  it yields null;
* a few ``Embarked`` values are empty (null when Spark reads the CSV), as in the real data.

``test.csv`` keeps ``Survived`` so that the scored output can be evaluated.
Standard library only; the same seed always gives byte-identical files.
"""

from __future__ import annotations

import argparse
import csv
import math
import random
from pathlib import Path

COLUMNS = ["PassengerId", "Pclass", "Name", "Sex", "Age", "SibSp", "Parch", "Fare", "Embarked",
           "Survived"]
DEFAULT_SEED = 1912
MISSING_AGE_RATE = 0.05
MISSING_EMBARKED_RATE = 0.004

_SURNAMES = [
    "Allen", "Andersson", "Baxter", "Brown", "Carter", "Cohen", "Davies", "Dean", "Fortune",
    "Goodwin", "Harris", "Hansen", "Johnson", "Kelly", "Lefebre", "Moran", "Murphy", "Nasser",
    "Olsen", "Palsson", "Rice", "Sage", "Skoog", "Smith", "Taylor", "Thomas", "Vander Planke",
    "Williams", "Wilson", "Young",
]
_MALE_NAMES = ["Arthur", "Charles", "Edward", "Frederick", "George", "Henry", "James", "John",
               "Karl", "Patrick", "Thomas", "William"]
_FEMALE_NAMES = ["Alice", "Anna", "Bridget", "Elizabeth", "Ellen", "Emily", "Helen", "Margaret",
                 "Mary", "Nora", "Ruth", "Sarah"]


def _age(rng: random.Random, pclass: int) -> float:
    """Older passengers in first class, younger in third; about 8% are children."""
    if rng.random() < 0.08:
        age = rng.uniform(0.4, 12.0)
        return round(age, 2) if age < 1 else float(int(age))
    mean = {1: 38.0, 2: 30.0, 3: 25.0}[pclass]
    age = min(max(rng.gauss(mean, 11.0), 13.0), 80.0)
    # Like the real data, most ages are whole years and a few end in .5.
    return int(age) + (0.5 if rng.random() < 0.05 else 0.0)


def _survival_probability(female: bool, pclass: int, age: float) -> float:
    """Women and children first, and the higher the class the better."""
    # About 19% of men and 77% of women survive, close to the real ship's 19% and 74%.
    logit = (-1.8 + 4.0 * female + 2.0 * (2 - pclass) - 0.07 * (age - 30)
             + (1.0 if age < 13 else 0.0))
    return 1 / (1 + math.exp(-logit))


def _passenger(rng: random.Random, passenger_id: int) -> dict[str, str]:
    pclass = rng.choices([1, 2, 3], weights=[0.24, 0.21, 0.55])[0]
    female = rng.random() < 0.35
    age = _age(rng, pclass)
    child = age < 13
    if child:  # children travel with parents, and often with siblings
        sibsp = rng.choices(range(6), weights=[0.55, 0.3, 0.07, 0.04, 0.03, 0.01])[0]
        parch = rng.choices(range(3), weights=[0.1, 0.5, 0.4])[0]
    else:
        sibsp = rng.choices(range(6), weights=[0.7, 0.24, 0.03, 0.01, 0.01, 0.01])[0]
        parch = rng.choices(range(5), weights=[0.8, 0.1, 0.07, 0.02, 0.01])[0]
    base_fare = {1: 60.0, 2: 15.0, 3: 8.0}[pclass]
    fare = base_fare * math.exp(rng.gauss(0.0, 0.35)) * (1 + 0.25 * (sibsp + parch))
    embarked = rng.choices(["S", "C", "Q"], weights={1: [0.6, 0.38, 0.02], 2: [0.85, 0.1, 0.05],
                                                    3: [0.72, 0.13, 0.15]}[pclass])[0]

    survived = rng.random() < _survival_probability(female, pclass, age)

    if female:
        title = "Miss" if age < 18 or rng.random() < 0.3 else "Mrs"
        first = rng.choice(_FEMALE_NAMES)
    else:
        title = "Master" if child else "Mr"
        first = rng.choice(_MALE_NAMES)
    name = f"{rng.choice(_SURNAMES)}, {title}. {first}"

    # The dirt is drawn last, so changing its rates leaves every other value as it was.
    age_text = "?" if rng.random() < MISSING_AGE_RATE else f"{age:g}"
    if rng.random() < MISSING_EMBARKED_RATE:
        embarked = ""
    return {
        "PassengerId": str(passenger_id),
        "Pclass": str(pclass),
        "Name": name,
        "Sex": "female" if female else "male",
        "Age": age_text,
        "SibSp": str(sibsp),
        "Parch": str(parch),
        "Fare": f"{fare:.4f}",
        "Embarked": embarked,
        "Survived": "1" if survived else "0",
    }


def _write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        # Names contain commas ("Smith, Mr. John"), so they are quoted, which Spark's CSV reader
        # undoes by default.
        writer = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def make_data(outdir: Path, seed: int = DEFAULT_SEED, train_rows: int = 800,
              test_rows: int = 300) -> dict[str, Path]:
    """Write ``train.csv`` and ``test.csv`` under ``outdir``; return {"train": path, "test": path}.

    Both files come from one stream of passengers (ids 1..train_rows+test_rows), split in order.
    """
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    passengers = [_passenger(rng, i) for i in range(1, train_rows + test_rows + 1)]
    paths = {"train": outdir / "train.csv", "test": outdir / "test.csv"}
    _write_csv(paths["train"], passengers[:train_rows])
    _write_csv(paths["test"], passengers[train_rows:])
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate Titanic-like train.csv and test.csv.")
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--train-rows", type=int, default=800)
    parser.add_argument("--test-rows", type=int, default=300)
    args = parser.parse_args(argv)
    for name, path in make_data(args.outdir, args.seed, args.train_rows, args.test_rows).items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
