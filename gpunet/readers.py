"""Data files to named NumPy columns through pyarrow: CSV, Parquet, Feather / Arrow, and folders or globs of them."""

import csv
import glob
import itertools
import os

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.feather as feather
import pyarrow.parquet as pq

from gpunet.errors import DataError

FORMATS = (".csv", ".parquet", ".feather", ".arrow")


def expand(path):
    """The files `path` names, in file-name order: itself, a folder's data files, or a glob's matches."""
    if os.path.isdir(path):
        files = [os.path.join(path, f) for f in sorted(os.listdir(path))
                 if not f.startswith((".", "_")) and os.path.splitext(f)[1].lower() in FORMATS]
        if not files:
            raise DataError(f"{path}: the folder holds no data files ({', '.join(FORMATS)})")
        return files
    if not os.path.exists(path) and any(c in path for c in "*?["):
        files = sorted(f for f in glob.glob(path) if os.path.isfile(f))
        if not files:
            raise DataError(f"{path}: no file matches")
        return files
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file")
    return [path]


def read_columns(files):
    """(names, columns, empty, starts) of `files` read as one table, in their order.

    `columns` holds one 1-D array per column: int64, float64 (empty cells as NaN) or an object array of
    str (empty cells as ""); `empty` maps a numeric column's index to its first row with an empty cell;
    `starts` is each file's first row.

    Raises:
        DataError: a file that cannot be read, or whose column names differ from the first file's.
    """
    tables = []
    for f in files:
        table = _read(f)
        if tables and table.column_names != tables[0].column_names:
            if sorted(table.column_names) != sorted(tables[0].column_names):
                raise DataError(f"{f}: its columns ({', '.join(table.column_names)}) differ from those of {files[0]} "
                                f"({', '.join(tables[0].column_names)}); every file must have the same column names")
            table = table.select(tables[0].column_names)
        tables.append(table)
    names, starts = tables[0].column_names, list(itertools.accumulate([0] + [t.num_rows for t in tables[:-1]]))
    for j, name in enumerate(names):
        to = _common_type([t.schema.types[j] for t in tables])
        for i, (f, t) in enumerate(zip(files, tables)):
            try:
                tables[i] = t.set_column(j, name, t.column(j).cast(to))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise DataError(f"{f}: column {j + 1} ({name}) holds {t.schema.types[j]}; gpunet reads numbers and text")
    table = pa.concat_tables(tables)
    del tables
    columns, empty = [], {}
    for j in range(len(names)):
        col = table.column(0)
        table = table.remove_column(0)  # so that each Arrow column is freed once it is copied
        if col.null_count:
            empty[j] = pc.index(pc.is_null(col), True).as_py()
        if pa.types.is_string(col.type):
            columns.append(pc.fill_null(col, "").to_numpy(zero_copy_only=False))
        else:
            columns.append(col.to_numpy())
    return names, columns, empty, starts


def row_number(path, row):
    """The row number that messages give for 0-based data row `row` of `path`: its line in a CSV, else row + 1."""
    if os.path.splitext(path)[1].lower() != ".csv":
        return row + 1
    rows = _csv_rows(path)
    return next(itertools.islice(rows, row + 1, None))[0]


def _read(path):
    """One file as an Arrow table with stripped, checked column names."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in FORMATS:
        raise DataError(f"{path}: unknown file type {ext or '(none)'}: use one of {', '.join(FORMATS + ('.npy', '.npz'))}")
    try:
        if ext == ".csv":
            table = _read_csv(path)
        elif ext == ".parquet":
            table = pq.read_table(path)
        else:
            table = _read_ipc(path)
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror or e}") from None
    except pa.ArrowInvalid as e:
        raise DataError(f"{path}: not a readable {ext[1:]} file ({e})") from None
    names = [n.strip() for n in table.column_names]
    _check_names(path, names, "row 1 (the header): " if ext == ".csv" else "")
    return table.rename_columns(names)


def _read_ipc(path):
    """A Feather (v1 or v2) or Arrow IPC file, or an Arrow IPC stream."""
    try:
        return feather.read_table(path)
    except pa.ArrowInvalid:
        with open(path, "rb") as f:
            return pa.ipc.open_stream(f).read_all()


def _read_csv(path):
    """A CSV through pyarrow: only an empty cell is null; a refused file gets a second, slower look."""
    parse, types = pacsv.ParseOptions(), {}
    while True:
        convert = pacsv.ConvertOptions(null_values=[""], true_values=[], false_values=[], column_types=types)
        try:
            table = pacsv.read_csv(path, parse_options=parse, convert_options=convert)
        except pa.ArrowInvalid as e:
            if parse.newlines_in_values:
                raise _csv_fault(path, e) from None
            parse = pacsv.ParseOptions(newlines_in_values=True)  # a quoted cell may hold a line break
            continue
        _check_names(path, [n.strip() for n in table.column_names], "row 1 (the header): ")
        # dates and times stay the text they were written as
        odd = {n: pa.string() for n, t in zip(table.column_names, table.schema.types) if pa.types.is_temporal(t)}
        if not odd:
            return table
        types.update(odd)


def _csv_rows(path):
    """(line number, cells) of each row of a CSV, skipping blank lines as pyarrow does."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = csv.reader(f)
        line = 1
        for row in rows:
            if row:
                yield line, row
            line = rows.line_num + 1


def _csv_fault(path, error):
    """The DataError for a CSV that pyarrow refused, naming the row at fault where the csv module finds it."""
    try:
        rows = _csv_rows(path)
        header = next(rows, None)
        if header is None:
            return DataError(f"{path}: the file is empty; expected a header row and data rows")
        names = [h.strip() for h in header[1]]
        _check_names(path, names, "row 1 (the header): ")
        for line, row in rows:
            if len(row) != len(names):
                return DataError(f"{path}: row {line} has {len(row)} cells, the header has {len(names)}")
    except UnicodeDecodeError:
        return DataError(f"{path}: not UTF-8 text; save it as UTF-8")
    return DataError(f"{path}: cannot read as CSV: {error}")


def _check_names(path, names, where):
    if "" in names:
        raise DataError(f"{path}: {where}column {names.index('') + 1} has no name")
    if len(set(names)) < len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise DataError(f"{path}: {where}column name {dup!r} appears twice")


def _common_type(types):
    """The one type for a column whose files hold `types`: int64, float64 (also when all are empty) or string."""
    kinds = set()
    for t in types:
        if pa.types.is_integer(t) or pa.types.is_boolean(t):
            kinds.add("int")
        elif pa.types.is_floating(t) or pa.types.is_decimal(t):
            kinds.add("float")
        elif not pa.types.is_null(t):
            kinds.add("text")
    if "text" in kinds:
        return pa.string()
    return pa.int64() if kinds == {"int"} else pa.float64()
