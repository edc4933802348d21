"""Tables from data files (CSV, Parquet, Feather / Arrow, .npy, .npz, folders and globs), target columns, and standardisation."""

import bisect
import math
import os
import zipfile
from dataclasses import dataclass, field, replace

import numpy as np

from gpunet.errors import DataError
TEXT_ONLY_AS_LABELS = "text is not a number: a text target is class labels (--task classification)"


def _readers():
    """gpunet.readers, imported when a table is read: pyarrow costs 0.15 s and 50 MB that a run on
    synthetic data does without."""
    from gpunet import readers

    return readers


@dataclass
class Table:
    """Named columns read from data files, one 1-D NumPy array each.

    A numeric column is int64 or float64, a text column an array of str. Text and empty cells are fine
    in a table; they are errors where a column is used as numbers (`numeric`), and an empty cell is one
    where it is used as class labels (`labels`).

    Attributes:
        names: the column names.
        columns: one array per column, all of the same length.
        path: what was read (a file, a folder or a glob).
        empty: for a numeric column with empty cells, its index -> the first such row.
        files: (file, its first row) for each file of the table, in order; empty for one file at `path`.
        named: whether the names are the file's own (False for an array's c0, c1, ...).
    """

    names: list
    columns: list
    path: str = ""
    empty: dict = field(default_factory=dict, repr=False)
    files: list = field(default_factory=list, repr=False)
    named: bool = True

    @property
    def rows(self):
        return len(self.columns[0]) if self.columns else 0

    @property
    def values(self):
        """Every column as numbers: float64 of shape (rows, columns)."""
        return self.numeric(range(len(self.names)))

    def numeric(self, indices):
        """The columns at `indices` as one float64 array of shape (rows, len(indices)).

        Raises:
            DataError: naming the file, row and column of the first empty cell, non-number or
                non-finite value, or a column that holds text.
        """
        indices = list(indices)
        out = np.empty((self.rows, len(indices)))
        faults = []
        for k, j in enumerate(indices):
            if self.columns[j].dtype.kind in "iuf":
                out[:, k] = self.columns[j]
                fault = self._fault(j, out[:, k])
            else:
                fault = self._parse(j, out[:, k])
            if fault:
                faults.append((fault[0], j, fault[1]))
        if faults:
            row, j, what = min(faults)
            raise DataError(f"{self._where(row)}, column {j + 1} ({self.names[j]}) {what}")
        return out

    def labels(self, index):
        """The column at `index` as it is (int64, float64 or str), for class labels.

        Raises:
            DataError: naming the file, row and column of the first empty cell or non-finite value.
        """
        col = self.columns[index]
        if col.dtype.kind in "iuf":
            fault = self._fault(index, col)
        else:
            row = next((r for r, cell in enumerate(col) if not cell.strip()), None)
            fault = None if row is None else (row, "is empty")
        if fault:
            raise DataError(f"{self._where(fault[0])}, column {index + 1} ({self.names[index]}) {fault[1]}")
        return col

    def _fault(self, j, values):
        """(row, what) of the first empty or non-finite cell of numeric column j, or None."""
        bad = ~np.isfinite(values)
        row = int(bad.argmax()) if bad.any() else None
        empty = self.empty.get(j)
        if empty is not None and (row is None or empty <= row):
            return empty, "is empty"
        return None if row is None else (row, f"is not finite: {values[row]}")

    def _parse(self, j, out):
        """Text column j read as numbers into `out`; (row, what) of its first cell that is not a finite number."""
        col = self.columns[j]
        try:
            out[:] = col.astype(np.float64)
            return self._fault(j, out)
        except ValueError:
            pass
        row, what = next((r, w) for r, w in enumerate(map(_cell_fault, col)) if w)
        if what.startswith("is not a number") and not any(_cell_fault(c) is None for c in col):
            what = f"holds text ({col[row].strip()!r}); {TEXT_ONLY_AS_LABELS}"
        return row, what

    def _where(self, row):
        """'file: row N' for 0-based table row `row`, N counted as the file counts it (a CSV's header is row 1)."""
        files = self.files or [(self.path, 0)]
        path, start = files[bisect.bisect_right([s for _, s in files], row) - 1]
        return f"{path}: row {_readers().row_number(path, row - start)}"


def _cell_fault(cell):
    """What is wrong with a text cell used as a number, or None."""
    try:
        v = float(cell)
    except ValueError:
        return "is empty" if not cell.strip() else f"is not a number: {cell.strip()!r}"
    return None if math.isfinite(v) else f"is not finite: {cell.strip()}"


def read_table(path, rows=None, delimiter=None):
    """Read a table: a CSV (header row), Parquet, Feather / Arrow file, a folder or glob of them, or a .npy / .npz.

    A folder's data files (not those whose names start with '.' or '_') or a glob's matches are read in
    file-name order as one table; they must have the same column names. An .npy is a 2-D array, an
    .npz holds one; their columns are named c0, c1, ...

    Args:
        path: a file, a folder or a glob.
        rows: (lo, hi) to read only the table's data rows lo..hi-1 (0-based, across its files in order),
            such as one rank's share: the rows before lo are counted, not kept or converted (a bad cell
            there goes unnoticed; a CSV row with the wrong number of cells does not), reading stops at hi,
            and an .npy is memory-mapped. A column's type is decided from these rows alone: a column
            with text elsewhere in the table is numeric here if these rows hold numbers only. Bad cells
            are still named by their file and its row (a CSV's line).
        delimiter: a CSV's cell separator (default ",").

    Returns:
        A Table; with `rows`, of hi - lo rows.

    Raises:
        DataError: naming the file, and the row and column where one is at fault; or a table with
            fewer than hi rows.
    """
    if rows is not None and not 0 <= rows[0] < rows[1]:
        raise ValueError(f"rows must be (lo, hi) with 0 <= lo < hi, not {rows}")
    lo = rows[0] if rows else 0
    files = _files(path)
    if _numpy_file(files):
        if delimiter is not None:
            raise DataError(f"{path}: --delimiter is for CSV files; an {os.path.splitext(path)[1]} file has none")
        table = _read_numpy(files[0], rows)
    else:
        names, columns, empty, starts = _readers().read_columns(files, rows, delimiter)
        table = Table(names, columns, path, empty, list(zip(files, starts)) if len(files) > 1 or lo else [])
    if rows and table.rows < rows[1] - lo:
        raise DataError(f"{path}: has fewer than the {rows[1]} data rows that rows={tuple(rows)} reads; "
                        "count them with count_rows")
    if table.rows == 0:
        raise DataError(f"{path}: no data rows")
    if not table.names:
        raise DataError(f"{path}: no columns")
    return table


def as_table(data):
    """A Table of `data`: a Table as it is, a path (read_table), a pandas DataFrame (its column names),
    or a 2-D NumPy array (columns c0, c1, ..., matched by position)."""
    if isinstance(data, Table):
        return data
    if isinstance(data, (str, os.PathLike)):
        return read_table(os.fspath(data))
    if hasattr(data, "columns") and hasattr(data, "dtypes"):  # a DataFrame, without importing pandas
        return _readers().from_arrow(data, "the DataFrame")
    array = np.asarray(data)
    if array.ndim != 2:
        raise DataError(f"an array of {array.ndim} dimensions; gpunet takes 2-D data (rows x columns)")
    import pyarrow as pa  # an object array's None and NaN are missing cells, its numbers numbers

    columns = {f"c{i}": pa.array(c, from_pandas=True) for i, c in enumerate(array.T)}
    return replace(_readers().from_arrow(pa.table(columns), "the array"), named=False)


def count_rows(path, delimiter=None):
    """The number of data rows of a table, without reading its cells where the format allows.

    Args:
        path: a file, a folder or a glob, as for `read_table`.

    Returns:
        What `read_table(path).rows` is: an .npy's from its header, Parquet's from its metadata,
        Feather / Arrow's from its record batches, a CSV's by parsing it block by block without
        converting its cells (blank lines skipped, line breaks inside quotes kept); an .npz's array is
        loaded.

    Raises:
        DataError: a file that cannot be read.
    """
    files = _files(path)
    return len(_numpy_array(files[0])) if _numpy_file(files) else _readers().count_rows(files, delimiter)


def _files(path):
    """The files `path` names: one .npy or .npz file as it is (read without pyarrow), else what readers.expand gives."""
    if os.path.splitext(str(path))[1].lower() in (".npy", ".npz") and os.path.isfile(path):
        return [path]
    return _readers().expand(path)


def _numpy_file(files):
    """Whether `files` is one .npy or .npz; a DataError if an .npy or .npz is among several."""
    exts = [os.path.splitext(f)[1].lower() for f in files]
    if len(files) == 1 and exts[0] in (".npy", ".npz"):
        return True
    numpy_file = next((f for f, e in zip(files, exts) if e in (".npy", ".npz")), None)
    if numpy_file:
        raise DataError(f"{numpy_file}: .npy and .npz files are read one at a time; for several files use "
                        "Parquet, Feather or CSV")
    return False


def _read_numpy(path, rows=None):
    """A Table of an .npy's or .npz's rows as float64: all of them, or lo..hi-1 copied from the memory map."""
    array = _numpy_array(path, "r" if rows else None)
    lo, hi = rows or (0, len(array))
    values = np.array(array[lo:hi], dtype=np.float64) if rows else array.astype(np.float64, copy=False)
    return Table([f"c{i}" for i in range(values.shape[1])], list(values.T), path, files=[(path, -lo)] if lo else [],
                 named=False)


def _numpy_array(path, mmap_mode="r"):
    """An .npy's array (memory-mapped with mmap_mode "r"), or an .npz's one array loaded; 2-D real numbers."""
    try:
        loaded = np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror or e}") from None
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
    return array


def column_indices(table, spec, option="--target"):
    """Column indices for names or 0-based indices (negative from the end): a comma-separated string or a list.

    Raises:
        DataError: naming `option` and the column that is not there, or one named twice.
    """
    tokens = spec.split(",") if isinstance(spec, str) else list(spec)
    out = []
    for token in (t.strip() if isinstance(t, str) else t for t in tokens):
        if token in table.names:
            out.append(table.names.index(token))
            continue
        try:
            i = int(token)
        except ValueError:
            raise DataError(f"{table.path}: {option} names no column {token!r}; the columns are "
                            f"{', '.join(table.names)}") from None
        if not -len(table.names) <= i < len(table.names):
            raise DataError(f"{table.path}: {option} column index {i} is out of range: there are "
                            f"{len(table.names)} columns")
        out.append(i % len(table.names))
    if len(set(out)) < len(out):
        raise DataError(f"{table.path}: {option} names a column twice")
    return out


@dataclass
class Scaler:
    """Per-column standardisation: (v - mean) / scale."""

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, values):
        """Mean and standard deviation per column of `values`."""
        return cls.of(values.mean(axis=0), values.std(axis=0), np.ptp(values, axis=0))

    @classmethod
    def of(cls, mean, deviation, spread):
        """From each column's mean, standard deviation and spread (max - min): a column whose values are
        all equal gets scale 0 exactly, which rounding in the deviation can miss (0.1 repeated: 1e-17)."""
        return cls(mean, np.where(spread == 0, 0.0, deviation))

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
