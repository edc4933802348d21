"""Rebuild the example tables of this folder from the packages that publish them.

Needs palmerpenguins and scikit-learn (`pip install palmerpenguins scikit-learn`); run it from anywhere:
python examples/make_examples.py
"""

import csv
import importlib.resources
import os

import numpy as np
from sklearn.datasets import load_diabetes, load_iris

HERE = os.path.dirname(os.path.abspath(__file__))
# Data rows (0-based) of penguins.csv for penguins-new.csv: one per species and island, one (8) without sex.
NEW_PENGUINS = (0, 8, 98, 198, 298)


def write_csv(name, header, rows):
    """Write rows under a header to HERE/name as comma-separated UTF-8 with '\\n' line ends."""
    with open(os.path.join(HERE, name), "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def number(v):
    """The shortest text that reads back as v: a whole number without a decimal point."""
    v = float(v)
    return str(int(v)) if v.is_integer() else repr(v)


def penguins():
    """penguins.csv as the package ships it, byte for byte; penguins-new.csv without species."""
    text = (importlib.resources.files("palmerpenguins") / "data" / "penguins.csv").read_text("utf-8")
    with open(os.path.join(HERE, "penguins.csv"), "w", encoding="utf-8", newline="") as f:
        f.write(text)
    header, *rows = csv.reader(text.splitlines())
    drop = header.index("species")
    keep = [i for i in range(len(header)) if i != drop]
    write_csv("penguins-new.csv", [header[i] for i in keep], [[rows[r][i] for i in keep] for r in NEW_PENGUINS])


def iris():
    """iris.csv: the four measurements in cm and the species by name."""
    data = load_iris()
    header = ["sepal_length", "sepal_width", "petal_length", "petal_width", "species"]
    rows = [[repr(float(v)) for v in x] + [data.target_names[y]] for x, y in zip(data.data, data.target)]
    write_csv("iris.csv", header, rows)


def diabetes():
    """diabetes.csv: the ten baseline variables unscaled and the progression one year later."""
    data = load_diabetes(scaled=False)
    table = np.column_stack([data.data, data.target])
    write_csv("diabetes.csv", data.feature_names + ["progression"], [[number(v) for v in row] for row in table])


if __name__ == "__main__":
    penguins()
    iris()
    diabetes()
