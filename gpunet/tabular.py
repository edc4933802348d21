"""Tables of numbers from files (CSV with a header, .npy, .npz), target columns, and standardisation."""

import csv
import os
import zipfile
from dataclasses import dataclass

import numpy as np

from gpunet.errors import DataError

FORMATS = (".csv", ".npy", ".npz")


@dataclass
class Table:
    """Named numeric columns: `values` is a float64 array of shape (rows, len(names))."""

    names: list
    values: np.ndarray
    path: str = ""


def read_table(path):
    """Read a CSV (header row, numeric cells), a 2-D .npy, or an .npz holding one 2-D array.

    Raises:
        DataError: naming the file, and the row and column where one is at fault.
    """
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file")
    ext = os.path.splitext(path)[1].lower()
    if ext not in FORMATS:
        raise DataError(f"{path}: unknown file type {ext or '(none)'}: use one of {', '.join(FORMATS)}")
    try:
        table = _read_csv(path) if ext == ".csv" else _read_numpy(path)
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror or e}") from None
    if table.values.shape[0] == 0:
        raise DataError(f"{path}: no data rows")
    if table.values.shape[1] == 0:
        raise DataError(f"{path}: no columns")
    return table


def _read_csv(path):
    with open(path, newline="") as f:
        rows = csv.reader(f)
        header = next(rows, None)
        if header is None:
            raise DataError(f"{path}: the file is empty; expected a header row and data rows")
        names = [h.strip() for h in header]
        if any(not n for n in names):
            raise DataError(f"{path}: row 1 (the header): column {names.index('') + 1} has no name")
        if len(set(names)) < len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise DataError(f"{path}: row 1 (the header): column name {dup!r} appears twice")
        data = []
        for line, row in enumerate(rows, start=2):
            if not row or all(not c.strip() for c in row):
                continue  # blank lines, such as a trailing one
            if len(row) != len(names):
                raise DataError(f"{path}: row {line} has {len(row)} cells, the header has {len(names)}")
            values = []
            for col, cell in enumerate(row):
                try:
                    values.append(float(cell))
                except ValueError:
                    what = "is empty" if not cell.strip() else f"is not a number: {cell.strip()!r}"
                    raise DataError(f"{path}: row {line}, column {col + 1} ({names[col]}) {what}") from None
                if not np.isfinite(values[-1]):
                    raise DataError(f"{path}: row {line}, column {col + 1} ({names[col]}) is not finite: {cell.strip()}")
            data.append(values)
    return Table(names, np.array(data, dtype=np.float64).reshape(len(data), len(names)), path)


def _read_numpy(path):
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: not a readable NumPy file ({e})") from None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            keys = list(loaded.keys())
            if len(keys) != 1:
                raise DataError(f"{path}: holds {len(keys)} arrays ({', '.join(keys)}); gpunet reads an .npz with one")
            array = loaded[keys[0]]
    else:
        array = loaded
    if array.ndim != 2:
        raise DataError(f"{path}: the array has {array.ndim} dimensions; gpunet reads 2-D (rows x columns)")
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise DataError(f"{path}: the array holds {array.dtype}, not real numbers")
    values = array.astype(np.float64)
    bad = np.argwhere(~np.isfinite(values))
    if bad.size:
        r, c = bad[0]
        raise DataError(f"{path}: row {r + 1}, column {c + 1} is not finite: {values[r, c]}")
    return Table([f"c{i}" for i in range(values.shape[1])], values, path)


def column_indices(table, spec):
    """Column indices for a comma-separated list of names or 0-based indices (negative from the end)."""
    out = []
    for token in (t.strip() for t in spec.split(",")):
        if token in table.names:
            out.append(table.names.index(token))
            continue
        try:
            i = int(token)
        except ValueError:
            raise DataError(
                f"{table.path}: no column {token!r}; the columns are {', '.join(table.names)}"
            ) from None
        if not -len(table.names) <= i < len(table.names):
            raise DataError(f"{table.path}: column index {i} is out of range: there are {len(table.names)} columns")
        out.append(i % len(table.names))
    if len(set(out)) < len(out):
        raise DataError(f"{table.path}: --target names a column twice")
    return out


def split_columns(table, target=None):
    """(x, y, input names, target names): `target` columns (default: the last) are y, the rest x."""
    t = column_indices(table, target) if target else [len(table.names) - 1]
    inputs = [i for i in range(len(table.names)) if i not in t]
    if not inputs:
        raise DataError(f"{table.path}: every column is a target; at least one input column is needed")
    names = table.names
    return table.values[:, inputs], table.values[:, t], [names[i] for i in inputs], [names[i] for i in t]


@dataclass
class Scaler:
    """Per-column standardisation: (v - mean) / scale."""

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, values):
        return cls(values.mean(axis=0), values.std(axis=0))

    @classmethod
    def identity(cls, columns):
        return cls(np.zeros(columns), np.ones(columns))

    def constant(self):
        """Indices of the columns that do not vary."""
        return np.flatnonzero(~(self.scale > 0))

    def keep_constant_unscaled(self):
        """Leave constant columns as they are (mean 0, scale 1) instead of dividing by zero."""
        c = self.constant()
        self.mean[c], self.scale[c] = 0.0, 1.0
        return c

    def transform(self, values):
        return (values - self.mean) / self.scale

    def inverse(self, values):
        return values * self.scale + self.mean
