"""Data files to named NumPy columns through pyarrow: CSV, Parquet, Feather / Arrow, and folders or globs of them."""

import csv
import glob
import itertools
import math
import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.feather as feather
import pyarrow.parquet as pq

from gpunet.errors import DataError

FORMATS = (".csv", ".parquet", ".feather", ".arrow")
BLOCK = 4 << 20  # bytes of a CSV parsed at a time: bounds the parser's memory
NO_ROWS = 2**31 - 1  # skip_rows_after_names that reads a CSV's header alone
# what a CSV writes for a missing cell (R's NA, spreadsheets' #N/A, databases' NULL); 'nan' and 'inf' stay values
MISSING = ["", "NA", "N/A", "n/a", "#N/A", "NULL", "null"]
# a CSV's booleans, read as Parquet's and pandas' are, then as the text True and False (_to_numpy)
TRUE, FALSE = ["true", "True", "TRUE"], ["false", "False", "FALSE"]


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


def count_rows(files, delimiter=None):
    """The number of data rows of `files` as one table: Parquet from its metadata, Feather / Arrow batch by
    batch, a CSV parsed block by block without converting its cells."""
    return sum(n for f in files for _, n, _ in _pieces(f, skip=math.inf, delimiter=delimiter))


def read_columns(files, rows=None, delimiter=None):
    """(names, columns, empty, starts) of `files` read as one table, in their order.

    `columns` holds one 1-D array per column: int64, float64 (empty cells as NaN) or an object array of
    str (empty cells as ""); a column that is text in any part is text throughout, one that mixes
    integers and floats is float64. `empty` maps a numeric column's index to its first row with an
    empty cell; `starts` is each file's first row. Each piece of a file (a CSV block, a Parquet
    column of a row group) becomes NumPy as it is read, so the peak is the columns plus one piece.

    With `rows=(lo, hi)` only the table's rows lo..hi-1 are kept, and the types are decided from them.
    `delimiter` is a CSV's cell separator (default ","). The pieces before lo are only counted (a Parquet row group from its metadata, a CSV block parsed
    without converting its cells), reading stops at hi, and `starts` holds the files read, counted
    from lo (the first may be negative).

    Raises:
        DataError: a file that cannot be read, or whose column names differ from the first file's.
    """
    lo, hi = rows or (0, math.inf)
    names, chunks, empty, starts, at = None, None, {}, [], 0  # at: the table's row where the next piece starts
    for f in files:
        if at >= hi:
            break
        starts.append(at - lo)
        for piece_names, n, column in _pieces(f, skip=lo - at, delimiter=delimiter):
            if names is None:
                names, chunks = piece_names, [[] for _ in piece_names]
            elif piece_names != names and sorted(piece_names) != sorted(names):
                raise DataError(f"{f}: its columns ({', '.join(piece_names)}) differ from those of "
                                f"{files[0]} ({', '.join(names)}); every file must have the same column names")
            a, b = max(lo - at, 0), min(hi - at, n)  # the piece's rows to keep
            for j, name in enumerate(names if a < b else ()):
                col = column(piece_names.index(name))
                col = col.slice(a, b - a) if (a, b) != (0, n) else col
                if col.null_count and j not in empty:
                    empty[j] = at + a - lo + pc.index(pc.is_null(col), True).as_py()
                chunks[j].append(_to_numpy(f, j, name, col))
            at += n
            if at >= hi:
                break
    if names is None:
        raise DataError(f"{files[0]}: no data rows")
    columns = []
    for j in range(len(names)):
        columns.append(_concatenate(chunks[j]))
        chunks[j] = None  # so that the peak is the columns plus one
    return names, columns, empty, starts


def from_arrow(data, path):
    """A Table of an Arrow table or a pandas DataFrame (through pyarrow), its columns as read_columns makes them."""
    from gpunet.tabular import Table

    try:
        table = data if isinstance(data, pa.Table) else pa.Table.from_pandas(data, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise DataError(f"{path}: cannot be read as a table ({e})") from None
    names = _checked(path, [str(n) for n in table.column_names])
    columns, empty = [], {}
    for j, name in enumerate(names):
        col = table.column(j)
        if col.null_count:
            empty[j] = pc.index(pc.is_null(col), True).as_py()
        columns.append(_to_numpy(path, j, name, col))
    if not table.num_rows:
        raise DataError(f"{path}: no data rows")
    return Table(names, columns, path, empty)


def _to_numpy(path, j, name, col):
    """An Arrow column as int64, float64 or an object array of str, its missing cells as NaN or "" (an integer
    column with missing cells becomes float64, a boolean one the text True and False).

    Not through Arrow's own to_numpy, which imports pandas where it is installed (0.4 s here).
    """
    t = col.type
    if pa.types.is_boolean(t):  # one text from every source (CSV, Parquet, a DataFrame): classes or categories
        col, t = pc.if_else(col, "True", "False"), pa.string()
    if pa.types.is_integer(t) and not col.null_count:
        to, dtype, fill = pa.int64(), np.int64, 0
    elif pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t) or pa.types.is_null(t):
        to, dtype, fill = pa.float64(), np.float64, np.nan
    else:
        to, dtype, fill = pa.string(), object, ""
    try:
        col = pc.fill_null(col.cast(to), fill) if col.null_count else col.cast(to)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise DataError(f"{path}: column {j + 1} ({name}) holds {t}; gpunet reads numbers and text") from None
    if dtype is object:
        return np.array(col.to_pylist(), dtype=object)
    chunks = [np.frombuffer(c.buffers()[1], dtype, len(c), c.offset * 8) for c in col.chunks]
    return np.concatenate(chunks) if chunks else np.empty(0, dtype)


def _concatenate(chunks):
    """One column from its pieces: text if any piece is text, else float64 if any is, else int64."""
    if any(c.dtype == object for c in chunks):
        chunks = [c if c.dtype == object else c.astype(str).astype(object) for c in chunks]
    return np.concatenate(chunks) if chunks else np.empty(0)


def row_number(path, row):
    """The row number that messages give for 0-based data row `row` of `path`: its line in a CSV, else row + 1."""
    if os.path.splitext(path)[1].lower() != ".csv":
        return row + 1
    rows = _csv_rows(path)
    return next(itertools.islice(rows, row + 1, None))[0]


def _pieces(path, skip=0, delimiter=None):
    """(names, rows, column) for each run of consecutive rows of a file: CSV blocks, Parquet row groups,
    Arrow record batches.

    `column(j)` reads column j of those rows (a Parquet column is read only then); it is None for a
    piece wholly within the first `skip` rows, which is only counted. Names are stripped and checked.
    """
    ext = os.path.splitext(path)[1].lower()
    if ext not in FORMATS:
        raise DataError(f"{path}: unknown file type {ext or '(none)'}: use one of {', '.join(FORMATS + ('.npy', '.npz'))}")
    if delimiter is not None and ext != ".csv":
        raise DataError(f"{path}: --delimiter is for CSV files; a {ext[1:]} file has its own columns")
    try:
        if ext == ".csv":
            yield from _csv_blocks(path, skip, delimiter)
        elif ext == ".parquet":
            f = pq.ParquetFile(path)
            raw, at = f.schema_arrow.names, 0
            for i in range(f.num_row_groups):
                n = f.metadata.row_group(i).num_rows
                yield (_checked(path, raw), n, None if at + n <= skip else
                       lambda j, i=i: f.read_row_group(i, columns=[raw[j]]).column(0))
                at += n
        else:
            for batch in _ipc_batches(path):
                table = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
                yield _checked(path, table.column_names), table.num_rows, table.column
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror or e}") from None
    except pa.ArrowInvalid as e:
        raise DataError(f"{path}: not a readable {ext[1:]} file ({e})") from None


def _ipc_batches(path):
    """The record batches of an Arrow IPC file (Feather v2, read one at a time) or stream; a Feather v1 file whole."""
    source = pa.memory_map(path)
    try:
        reader = pa.ipc.open_file(source)
        return (reader.get_batch(i) for i in range(reader.num_record_batches))
    except pa.ArrowInvalid:
        pass
    try:
        return pa.ipc.open_stream(source)
    except pa.ArrowInvalid:
        return [feather.read_table(path)]


def _csv_blocks(path, skip=0, delimiter=None):
    """(names, rows, column) for each block of a CSV (see _csv_framed); column is None for a block wholly
    within the first `skip` rows, which is parsed only to count its rows.

    The cells in MISSING are null; 'nan' and 'inf' stay values. A refused block gets a second,
    slower look at the whole file for the row at fault.
    """
    names, types, at = None, {}, 0
    for block in _csv_framed(path):
        read = pacsv.ReadOptions(column_names=names)
        parse = pacsv.ParseOptions(delimiter=delimiter or ",", newlines_in_values=b'"' in block)
        if at < skip:  # count the block's rows, converting one column to text only
            header = names or _csv_parse(path, block, pacsv.ReadOptions(skip_rows_after_names=NO_ROWS), parse).column_names
            checked = _checked(path, header, "row 1 (the header): ")
            one = pacsv.ConvertOptions(include_columns=header[:1], column_types={header[0]: pa.string()})
            n = _csv_parse(path, block, read, parse, one).num_rows
            if at + n <= skip:
                names, at = header, at + n
                yield checked, n, None
                continue
        while True:
            convert = pacsv.ConvertOptions(null_values=MISSING, strings_can_be_null=True, true_values=TRUE,
                                           false_values=FALSE, column_types=types)
            table = _csv_parse(path, block, read, parse, convert)
            # dates and times stay the text they were written as
            odd = {n: pa.string() for n, t in zip(table.column_names, table.schema.types) if pa.types.is_temporal(t)}
            if not odd:
                break
            types.update(odd)
        names, at = names or _one_column_hint(path, table.column_names, delimiter), at + table.num_rows
        yield _checked(path, names, "row 1 (the header): "), table.num_rows, table.column
    if names is None:
        raise _csv_fault(path, "no header")


def _one_column_hint(path, names, delimiter):
    """`names`; a DataError when a CSV read as one column has a header that holds another separator."""
    other = next((sep for sep in (";", "\t", "|") if len(names) == 1 and sep in names[0]), None)
    if other and delimiter is None:
        shown = "'\\t'" if other == "\t" else repr(other)
        raise DataError(f"{path}: read as one column, but its header holds {shown}: give --delimiter {shown}")
    return names


def _csv_framed(path):
    """A CSV's bytes, BLOCK (ended at a line break outside quotes) at a time.

    pyarrow's own streaming reader reads ahead without bound; blocks of our own bound the memory to
    the columns plus one block.
    """
    with open(path, "rb") as f:
        while block := f.read(BLOCK):
            block += f.readline()
            while block.count(b'"') % 2:  # inside a quoted cell: the block ends after it
                line = f.readline()
                if not line:
                    break
                block += line
            yield block


def _csv_parse(path, block, read, parse, convert=None):
    """pyarrow's parse of one block; a DataError naming the row at fault if it is refused."""
    try:
        return pacsv.read_csv(pa.py_buffer(block), read_options=read, parse_options=parse, convert_options=convert)
    except pa.ArrowInvalid as e:
        raise _csv_fault(path, e) from None


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
        names = _checked(path, header[1], "row 1 (the header): ")
        for line, row in rows:
            if len(row) != len(names):
                return DataError(f"{path}: row {line} has {len(row)} cells, the header has {len(names)}")
    except UnicodeDecodeError:
        return DataError(f"{path}: not UTF-8 text; save it as UTF-8")
    return DataError(f"{path}: cannot read as CSV: {error}")


def _checked(path, names, where=""):
    """`names` stripped; a DataError for an empty or repeated one."""
    names = [n.strip() for n in names]
    if "" in names:
        raise DataError(f"{path}: {where}column {names.index('') + 1} has no name")
    if len(set(names)) < len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise DataError(f"{path}: {where}column name {dup!r} appears twice")
    return names
