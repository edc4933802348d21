"""A table's columns made into the network's inputs: numbers with their missing cells filled, text one-hot
over the training rows' categories. Fitted on the training rows (over every rank), saved with the model,
applied to new rows by predict and evaluate, so the same numbers reach the network everywhere."""

from dataclasses import asdict, dataclass, field

import numpy as np

from gpunet.comm import Single
from gpunet.errors import DataError

def _arrow():
    """pyarrow and its compute functions, imported when a table is prepared: a run on synthetic data does
    without them (0.15 s and 40 MB)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    return pa, pc


MISSING_CATEGORY = ""  # a text column's missing cells, one category of their own
MANY_CATEGORIES = 200  # more categories than this in a text column: a warning (an identifier, perhaps)
MISSING_MODES = ("fill", "error")


@dataclass
class Column:
    """One input column's preparation.

    Attributes:
        name: the column's name in the table.
        kind: "number", or "category" (text, one-hot).
        fill: a number column's value for its missing cells (the training rows' mean); None: they are errors.
        categories: a category column's sorted categories from the training rows, "" standing for its
            missing cells when the training rows had some; a category not among them is all zeros.
        missing: "fill", or "error": missing cells are refused (--missing error).
    """

    name: str
    kind: str = "number"
    fill: float | None = None
    categories: list = field(default_factory=list)
    missing: str = "fill"

    @property
    def features(self):
        """The names of the network inputs this column becomes."""
        if self.kind == "number":
            return [self.name]
        return [f"{self.name}={c if c != MISSING_CATEGORY else '(missing)'}" for c in self.categories]


@dataclass
class Preparation:
    """How a table's input columns become the network's inputs (before standardisation).

    Attributes:
        columns: one Column per input column, in the network's order.
        keep: columns carried unchanged into predict's output (an identifier, say).
    """

    columns: list
    keep: list = field(default_factory=list)

    @property
    def names(self):
        return [c.name for c in self.columns]

    @property
    def features(self):
        return [f for c in self.columns for f in c.features]

    @classmethod
    def plain(cls, names):
        """Number columns, missing cells refused: a model of format 1 or 2."""
        return cls([Column(n) for n in names])

    def to_dict(self):
        return {"columns": [asdict(c) for c in self.columns], "keep": list(self.keep)}

    @classmethod
    def from_dict(cls, d):
        return cls([Column(**c) for c in d["columns"]], list(d.get("keep", [])))

    @classmethod
    def fit(cls, table, indices, rows, comm=None, missing="fill", keep=()):
        """(Preparation, warnings) fitted on the training `rows` of the columns at `indices`.

        With `comm` (several ranks, each holding a share of the table), the kinds, means and
        categories are every rank's. missing="error" refuses missing cells instead of filling them.

        Raises:
            DataError: a number column with no value on the training rows.
        """
        comm = comm or Single()
        columns, notes = [], []
        for j in indices:
            col, name = table.columns[j], table.names[j]
            if comm.any(col.dtype.kind not in "iuf") and not _mostly_numbers(table, j, rows, comm):
                columns.append(_fit_category(table, j, rows, comm, missing))
                if len(columns[-1].categories) > MANY_CATEGORIES:
                    notes.append(f"Warning: {table.path}: text column {name!r} has {len(columns[-1].categories)} categories, "
                                 "an input each; if it identifies rows, --drop it (or --keep it for predict's output)")
            else:
                columns.append(_fit_number(table, j, rows, comm, missing))
        return cls(columns, list(keep)), notes

    def transform(self, table, indices, rows=None):
        """(inputs, filled, unseen) for the table's `rows` (default: all) of the columns at `indices`
        (one per Column, in order): float64 of shape (rows, len(features)), and per column name the
        missing cells filled and the cells made all zeros (a category not seen in training, or a missing
        text cell where training had none), where there are some.

        Raises:
            DataError: naming the file, row and column of a cell that is not a number, not finite, or
                missing where missing cells are refused.
        """
        rows = np.arange(table.rows) if rows is None else np.asarray(rows)
        out = np.zeros((len(rows), len(self.features)))
        filled, unseen, at = {}, {}, 0
        for c, j in zip(self.columns, indices):
            width = len(c.features)
            if c.kind == "number":
                n_filled = _put_numbers(table, j, rows, c.fill, out[:, at])
            else:
                n_filled, n_unseen = _put_one_hot(table, j, rows, c, out[:, at : at + width])
                if n_unseen:
                    unseen[c.name] = n_unseen
            if n_filled:
                filled[c.name] = n_filled
            at += width
        return out, filled, unseen


NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$|^[+-]?(inf|nan)$"


def _mostly_numbers(table, j, rows, comm):
    """Whether at least half of text column j's training cells are numbers: a column of numbers with a few
    bad cells, which are then named as errors, not taken as categories."""
    _, pc = _arrow()
    text = _text(table, j, rows)
    numbers = pc.sum(pc.match_substring_regex(text, NUMBER, ignore_case=True)).as_py() or 0
    counts = comm.sum([numbers, len(text) - text.null_count])
    return counts[0] >= counts[1] / 2


def _fit_number(table, j, rows, comm, missing):
    """A number column's Column: the mean of its training rows' values, where missing cells are filled."""
    values = _numbers(table, j, rows)
    if missing == "error":
        return Column(table.names[j], missing="error")
    present = values[~np.isnan(values)]
    count, total = comm.sum([len(present), present[np.isfinite(present)].sum()])
    if count == 0:
        raise DataError(f"{table.path}: input column {table.names[j]!r} has no values on the training rows; "
                        "--drop it")
    return Column(table.names[j], fill=float(total / count))


def _fit_category(table, j, rows, comm, missing):
    """A text column's Column: its training rows' sorted categories (with "" for missing cells, if any)."""
    _, pc = _arrow()
    text = _text(table, j, rows)
    if missing == "error":
        _refuse_missing(table, j, rows, pc.is_null(text).to_numpy(zero_copy_only=False))
    seen = [v for v in pc.unique(text).to_pylist() if v is not None]
    every = sorted({v for share in comm.allgather(seen) for v in share})
    if comm.any(text.null_count):
        every = [MISSING_CATEGORY, *every]
    return Column(table.names[j], "category", categories=every, missing=missing)


def _refuse_missing(table, j, rows, missing):
    """A DataError naming the first missing cell among `rows` of column j (`missing` marks them), if any."""
    if not missing.any():
        return
    row = int(rows[np.argmax(missing)])
    what = "is empty" if table.empty.get(j) == row or table.columns[j].dtype.kind not in "f" else \
        "is not finite: nan"
    raise DataError(f"{table._where(row)}, column {j + 1} ({table.names[j]}) {what}; missing cells are refused "
                    "(--missing error)")


def _numbers(table, j, rows):
    """Column j's `rows` as float64, missing cells NaN; a DataError naming a text cell that is not a number."""
    pa, pc = _arrow()
    col = table.columns[j][rows]
    if col.dtype.kind in "iuf":
        return col.astype(np.float64)
    text = as_text(col)
    try:
        return np.array(pc.fill_null(pc.cast(text, pa.float64()), np.nan).to_numpy(zero_copy_only=False))
    except pa.ArrowInvalid:
        bad = next(k for k, v in enumerate(text.to_pylist()) if v is not None and not is_number(v))
        raise DataError(f"{table._where(rows[bad])}, column {j + 1} ({table.names[j]}) is not a number: "
                        f"{text[bad].as_py()!r}; the model takes numbers there") from None


def is_number(text):
    """Whether a cell's text reads as a number."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def missing_cells(col):
    """Where a column's cells are missing: NaN numbers, and the text cells as_text makes null."""
    if col.dtype.kind == "f":
        return np.isnan(col)
    if col.dtype.kind in "iu":
        return np.zeros(len(col), bool)
    _, pc = _arrow()
    return pc.is_null(as_text(col)).to_numpy(zero_copy_only=False)


def _text(table, j, rows):
    """Column j's `rows` as text (as_text)."""
    return as_text(table.columns[j][rows])


def as_text(col):
    """A column (numbers or text) as an Arrow string array, trimmed, whole numbers without their .0; its missing
    cells null: NaN numbers, and empty or blank text or the text NaN (pandas' missing text)."""
    pa, pc = _arrow()
    if col.dtype.kind == "f":
        whole = np.isfinite(col) & (col == np.round(col))
        text = pa.array(np.where(whole, np.where(whole, col, 0).astype(np.int64).astype(str), col.astype(str)),
                        pa.string(), mask=np.isnan(col))
    else:
        text = pc.utf8_trim_whitespace(pa.array(col.astype(str) if col.dtype.kind in "iu" else col, pa.string()))
    missing = pc.or_(pc.equal(text, ""), pc.equal(pc.utf8_lower(text), "nan"))
    return pc.if_else(missing, pa.scalar(None, pa.string()), text)


def _put_numbers(table, j, rows, fill, out):
    """Write column j's `rows` into `out`, missing cells as `fill`; the number filled."""
    values = _numbers(table, j, rows)
    missing = np.isnan(values)
    n = int(np.count_nonzero(missing))
    if n and fill is None:
        _refuse_missing(table, j, rows, missing)
    values[missing] = fill if n else 0.0
    if not np.isfinite(values).all():
        bad = int(np.argmax(~np.isfinite(values)))
        raise DataError(f"{table._where(rows[bad])}, column {j + 1} ({table.names[j]}) is not finite: {values[bad]}")
    out[:] = values
    return n


def _put_one_hot(table, j, rows, column, out):
    """Write column j's `rows` one-hot over the Column's categories into `out`; (missing cells given their
    category, cells made all zeros: unseen categories, and missing cells where training had none)."""
    pa, pc = _arrow()
    text = _text(table, j, rows)
    missing = pc.is_null(text).to_numpy(zero_copy_only=False)
    if column.missing == "error":
        _refuse_missing(table, j, rows, missing)
    filled = MISSING_CATEGORY in column.categories
    if filled:
        text = pc.fill_null(text, MISSING_CATEGORY)
    codes = pc.index_in(text, value_set=pa.array(column.categories, pa.string()))
    known = pc.is_valid(codes).to_numpy(zero_copy_only=False)
    at = pc.fill_null(codes, 0).to_numpy(zero_copy_only=False)
    out[np.flatnonzero(known), at[known]] = 1.0
    return int(np.count_nonzero(missing)) if filled else 0, int(np.count_nonzero(~known))


TASKS = ("auto", "regression", "classification")
FEW_CLASSES = 20  # integer labels with at most this many distinct values are classes (auto)
MANY_CLASSES = 100  # a numeric target with more distinct values is refused as classes unless asked for by name


def infer_task(table, target, task="auto", loss=None, comm=None):
    """(classify, note): whether the target column at index `target` is class labels, and a line saying why.

    --loss wins over the data (ce: classes, sse or mse: values); else `task`; else the data: text labels,
    and integers with at most FEW_CLASSES distinct values, are classes; other numbers are values.

    Raises:
        ConfigError: --task and --loss disagree, or --loss ce on a numeric target with more than
            MANY_CLASSES distinct values (unless --task classification).
    """
    from gpunet.errors import ConfigError

    comm, col, name = comm or Single(), table.columns[target], table.names[target]
    if loss is not None and task != "auto" and (loss == "ce") != (task == "classification"):
        raise ConfigError(f"--loss {loss} and --task {task} disagree: ce is the loss of classification, sse and mse "
                          "of regression; give one of them")
    text = comm.any(col.dtype.kind not in "iuf")
    distinct = None if text else _distinct(col, comm)
    if loss is not None or task != "auto":
        classify = loss == "ce" if loss is not None else task == "classification"
        if classify and task != "classification" and distinct is not None and distinct > MANY_CLASSES:
            raise ConfigError(f"target column {name!r} has more than {MANY_CLASSES} distinct numbers, too many "
                              "for classes: give --task classification to train a classifier anyway")
        return classify, None
    integral = not text and not comm.any(not _integers(col, target in table.empty))
    if text or (integral and distinct <= FEW_CLASSES):
        why = "holds text" if text else f"holds {distinct} distinct integers"
        return True, f"Note: task: classification (target {name!r} {why}); --task regression to override"
    return False, f"Note: task: regression (target {name!r} holds numbers); --task classification to override"


def _integers(col, had_missing):
    """Whether a numeric column holds integers: int64, or whole floats that were integers with missing cells."""
    if col.dtype.kind in "iu":
        return True
    present = col[~np.isnan(col)]
    return had_missing and bool(np.all(present == np.round(present)))


def _distinct(col, comm):
    """The number of distinct non-missing values of a numeric column over the ranks, counted up to MANY_CLASSES + 1."""
    values = np.unique(col[~np.isnan(col)] if col.dtype.kind == "f" else col)[: MANY_CLASSES + 1]
    return len({v for share in comm.allgather(values.tolist()) for v in share})
