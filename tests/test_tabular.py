"""The reader: CSV, Parquet, Feather, folders and globs as one table; numbers, text, and the bad-input catalogue."""

import os

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")  # a dependency; absent only from the GPU machine's bare python3
import pyarrow.feather as feather  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from gpunet import readers
from gpunet.errors import DataError
from gpunet.tabular import Table, count_rows, read_table


def write(path, text):
    path.write_text(text)
    return str(path)


def numeric_error(path):
    with pytest.raises(DataError) as err:
        read_table(path).values
    return str(err.value)


# --- the catalogue, as in test_real_use, with the file's own line numbers -------------------------


@pytest.mark.parametrize(
    "text, says",
    [
        ("a,b,t\n1,2,3\n4,x,6\n", "row 3, column 2 (b) is not a number: 'x'"),
        ("a,b,t\n1,2,3\n4,,6\n", "row 3, column 2 (b) is empty"),
        ("a,b,t\n1,2,3\n4, ,6\n", "row 3, column 2 (b) is empty"),
        ("a,b,t\n1,2,3\n4,inf,6\n", "row 3, column 2 (b) is not finite: inf"),
        ("a,b,t\n1,2,3\n4,nan,6\n", "row 3, column 2 (b) is not finite: nan"),
        ("a,b,t\n1,2.5,3\n4,,6\n5,nan,7\n", "row 3, column 2 (b) is empty"),  # empty before nan: empty, not nan
        ("a,b,t\n1,nan,3\n4,,6\n", "row 2, column 2 (b) is not finite: nan"),
        ("a,b,t\n1,2,3\n4,5,x\n6,y,8\n", "row 3, column 3 (t) is not a number: 'x'"),  # first in the file wins
        # blank lines are skipped but still counted
        ("\na,b,t\n\n1,2,3\n\n\n4,x,6\n", "row 7, column 2 (b) is not a number: 'x'"),
        ("a,b,t\r\n\r\n1,2,3\r\n4,,6\r\n", "row 4, column 2 (b) is empty"),
    ],
)
def test_bad_cells_are_named_by_file_line_and_column(tmp_path, text, says):
    path = write(tmp_path / "d.csv", text)
    message = numeric_error(path)
    assert message == f"{path}: {says}"


@pytest.mark.parametrize(
    "text, says",
    [
        ("a,b,t\n1,2,3\n4,5\n", "row 3 has 2 cells, the header has 3"),
        ("a,b,t\n\n1,2,3\n\n4,5,6,7\n", "row 5 has 4 cells, the header has 3"),
        ("a,b,t\n1,2,3\n  \n", "row 3 has 1 cells, the header has 3"),
        ("", "the file is empty"),
        ("\n\n", "the file is empty"),
        ("a,b,t\n", "no data rows"),
        ("a,,t\n1,2,3\n", "row 1 (the header): column 2 has no name"),
        ("a,b,a\n1,2,3\n", "row 1 (the header): column name 'a' appears twice"),
        ("a, a ,t\n1,2,3\n", "row 1 (the header): column name 'a' appears twice"),
    ],
)
def test_bad_files_are_named_by_file_and_line(tmp_path, text, says):
    path = write(tmp_path / "d.csv", text)
    with pytest.raises(DataError) as err:
        read_table(path)
    assert str(err.value).startswith(f"{path}: {says}")


@pytest.mark.parametrize("block", [readers.BLOCK, 1 << 16])
def test_one_bad_cell_deep_in_a_large_file_is_found_by_its_line(tmp_path, monkeypatch, block):
    # past pyarrow's first block (1 MiB), or past many of gpunet's blocks, with blank lines before it
    monkeypatch.setattr(readers, "BLOCK", block)
    values = np.arange(100_000 * 3, dtype=np.float64).reshape(-1, 3) / 8
    lines = [f"{a},{b},{c}" for a, b, c in values.tolist()]
    bad = 90_000
    lines[bad] = f"{values[bad, 0]},oops,{values[bad, 2]}"
    text = "a,b,c\n\n" + "\n".join(lines[:1000]) + "\n\n\n" + "\n".join(lines[1000:]) + "\n"
    path = write(tmp_path / "big.csv", text)
    table = read_table(path)
    np.testing.assert_array_equal(table.numeric([0, 2]), values[:, [0, 2]])
    # header, blank, 1000 rows, two blanks: data row i is on line i + 5 after the first 1000
    assert numeric_error(path) == f"{path}: row {bad + 5}, column 2 (b) is not a number: 'oops'"
    lines[bad] = lines[bad].replace(",oops,", ",,")
    path = write(tmp_path / "big_empty.csv", "a,b,c\n" + "\n".join(lines) + "\n")
    assert numeric_error(path) == f"{path}: row {bad + 2}, column 2 (b) is empty"


def test_blocks_agree_on_types_and_quoted_line_breaks(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "BLOCK", 1 << 12)
    n = 3000
    ints = [str(i) for i in range(n)]
    floats = ints[: n // 2] + [f"{i}.5" for i in range(n // 2, n)]  # integers in the first blocks only
    text = ints[: n - 10] + ["cat"] * 10  # numbers, then text in the last block
    notes = [f'"line {i}\nmore, ""quoted"""' if i % 7 == 0 else "plain" for i in range(n)]
    path = write(tmp_path / "b.csv", "i,f,s,note\n" + "".join(
        f"{a},{b},{c},{d}\n" for a, b, c, d in zip(ints, floats, text, notes)))
    table = read_table(path)
    assert table.rows == n
    assert table.labels(0).dtype == np.int64 and table.labels(1).dtype == np.float64
    np.testing.assert_array_equal(table.numeric([0, 1]), np.array([ints, floats], dtype=float).T)
    assert list(table.labels(2)) == text
    assert list(table.labels(3)) == [f'line {i}\nmore, "quoted"' if i % 7 == 0 else "plain" for i in range(n)]
    # the first text cell, counted in lines of the file (each quoted note adds one)
    line = 2 + (n - 10) + sum(1 for i in range(n - 10) if i % 7 == 0)
    with pytest.raises(DataError, match=rf"b\.csv: row {line}, column 3 \(s\) is not a number: 'cat'"):
        table.numeric([2])


def test_csv_values_match_numpy(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 4))
    path = tmp_path / "d.csv"
    np.savetxt(path, x, delimiter=",", header="a, b ,c,d", comments="", fmt="%.17g")
    table = read_table(str(path))
    assert table.names == ["a", "b", "c", "d"] and table.rows == 500
    np.testing.assert_array_equal(table.values, np.loadtxt(path, delimiter=",", skiprows=1))
    np.testing.assert_array_equal(table.numeric([3, 1]), x[:, [3, 1]])
    assert table.values.dtype == np.float64 and table.values.flags.c_contiguous


def test_quoted_cells_and_line_breaks_inside_them_keep_the_line_numbers(tmp_path):
    path = write(tmp_path / "q.csv", 'a,s\n1,"x\ny"\n"2",z\n3,\n')
    table = read_table(path)
    assert list(table.columns[1]) == ["x\ny", "z", ""]
    np.testing.assert_array_equal(table.numeric([0])[:, 0], [1, 2, 3])
    with pytest.raises(DataError, match=r"row 5, column 2 \(s\) is empty"):
        table.labels(1)


# --- text and integer columns -------------------------------------------------------------------


def test_text_columns_are_labels_and_not_numbers(tmp_path):
    path = write(tmp_path / "iris.csv", "x,y,species\n1,2,setosa\n3,4,versicolor\n5,6,setosa\n")
    table = read_table(path)
    labels = table.labels(2)
    assert list(labels) == ["setosa", "versicolor", "setosa"] and all(isinstance(v, str) for v in labels)
    np.testing.assert_array_equal(table.numeric([1, 0]), [[2, 1], [4, 3], [6, 5]])
    with pytest.raises(DataError) as err:
        table.numeric([0, 2])
    assert str(err.value) == (f"{path}: row 2, column 3 (species) holds text ('setosa'); "
                              "text is not a number: a text target is class labels (--task classification)")


def test_labels_report_empty_and_non_finite_cells(tmp_path):
    text = write(tmp_path / "t.csv", "x,y\n1,a\n2,\n3,b\n")
    with pytest.raises(DataError, match=r"t\.csv: row 3, column 2 \(y\) is empty$"):
        read_table(text).labels(1)
    ints = write(tmp_path / "i.csv", "x,y\n1,0\n2,2\n3,\n")
    with pytest.raises(DataError, match=r"i\.csv: row 4, column 2 \(y\) is empty$"):
        read_table(ints).labels(1)
    floats = write(tmp_path / "f.csv", "x,y\n1,0.5\n2,nan\n")
    with pytest.raises(DataError, match=r"f\.csv: row 3, column 2 \(y\) is not finite: nan$"):
        read_table(floats).labels(1)


def test_integer_columns_stay_integers_for_labels_and_are_float64_as_numbers(tmp_path):
    table = read_table(write(tmp_path / "d.csv", "x,k\n0.5,3\n1.5,-1\n2.5,7\n"))
    labels = table.labels(1)
    assert labels.dtype == np.int64 and list(labels) == [3, -1, 7]
    assert table.numeric([1]).dtype == np.float64


def test_a_text_column_with_numbers_written_as_text_reads_as_numbers(tmp_path):
    path = write(tmp_path / "d.csv", 'x,y\n1,"2"\n3, 4 \n5,6\n')
    np.testing.assert_array_equal(read_table(path).values, [[1, 2], [3, 4], [5, 6]])


def test_dates_stay_the_text_they_were_written_as(tmp_path):
    table = read_table(write(tmp_path / "d.csv", "x,when\n1,2020-01-02 10:00\n2,2021-03-04 11:30\n"))
    assert list(table.labels(1)) == ["2020-01-02 10:00", "2021-03-04 11:30"]


# --- Parquet, Feather, Arrow --------------------------------------------------------------------


def typed_table():
    rng = np.random.default_rng(1)
    return pa.table({
        "i8": pa.array(rng.integers(-100, 100, 50), pa.int8()),
        "u32": pa.array(rng.integers(0, 1000, 50), pa.uint32()),
        "f16": pa.array(rng.standard_normal(50).astype(np.float16)),
        "f32": pa.array(rng.standard_normal(50).astype(np.float32)),
        "f64": pa.array(rng.standard_normal(50)),
        "cls": pa.array(rng.choice(["a", "b", "c"], 50)).dictionary_encode(),
    })


@pytest.mark.parametrize("ext", [".parquet", ".feather", ".arrow"])
def test_parquet_and_arrow_files_keep_names_and_types(tmp_path, ext):
    expected = typed_table()
    path = str(tmp_path / f"d{ext}")
    (pq.write_table if ext == ".parquet" else feather.write_feather)(expected, path)
    table = read_table(path)
    assert table.names == expected.column_names and table.rows == 50
    want = np.column_stack([expected.column(i).to_numpy().astype(np.float64) for i in range(5)])
    np.testing.assert_array_equal(table.numeric(range(5)), want)
    assert table.labels(0).dtype == np.int64 and table.labels(4).dtype == np.float64
    assert list(table.labels(5)) == expected.column(5).cast(pa.string()).to_pylist()
    with pytest.raises(DataError, match=r"row 1, column 6 \(cls\) holds text"):
        table.values


def test_an_arrow_stream_file(tmp_path):
    expected = typed_table().select(["f64"])
    path = tmp_path / "s.arrow"
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, expected.schema) as writer:
        writer.write_table(expected)
    np.testing.assert_array_equal(read_table(str(path)).values[:, 0], expected.column(0).to_numpy())


def test_parquet_nulls_and_nans_are_named_by_data_row(tmp_path):
    path = str(tmp_path / "d.parquet")
    pq.write_table(pa.table({"a": [1.0, 2.0, 3.0], "b": [1, None, 3], "c": [1.0, 2.0, float("nan")]}), path)
    assert numeric_error(path) == f"{path}: row 2, column 2 (b) is empty"
    with pytest.raises(DataError, match=r"row 3, column 3 \(c\) is not finite: nan"):
        read_table(path).numeric([0, 2])


def test_unreadable_files(tmp_path):
    bad = write(tmp_path / "x.parquet", "not parquet")
    with pytest.raises(DataError, match=r"x\.parquet: not a readable parquet file"):
        read_table(bad)
    nested = str(tmp_path / "n.parquet")
    pq.write_table(pa.table({"a": [1.0], "l": [[1, 2]]}), nested)
    with pytest.raises(DataError, match=r"n\.parquet: column 2 \(l\) holds list<element: int64>"):
        read_table(nested)


# --- folders and globs --------------------------------------------------------------------------


def shards(tmp_path, ext=".parquet"):
    """Three shards of one table, written in an order other than their names' order."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((30, 3))
    folder = tmp_path / "shards"
    folder.mkdir()
    for i in (2, 0, 1):
        part = pa.table({"a": x[10 * i : 10 * i + 10, 0], "b": x[10 * i : 10 * i + 10, 1], "t": x[10 * i : 10 * i + 10, 2]})
        path = str(folder / f"part-{i:03d}{ext}")
        if ext == ".csv":
            np.savetxt(path, x[10 * i : 10 * i + 10], delimiter=",", header="a,b,t", comments="", fmt="%.17g")
        else:
            pq.write_table(part, path)
    (folder / "_SUCCESS").write_text("")
    (folder / ".part-000.parquet.crc").write_text("")
    return folder, x


@pytest.mark.parametrize("ext", [".parquet", ".csv"])
def test_a_folder_and_a_glob_read_as_one_table_in_name_order(tmp_path, ext):
    folder, x = shards(tmp_path, ext)
    for path in (str(folder), str(folder / f"part-*{ext}")):
        table = read_table(path)
        assert table.names == ["a", "b", "t"] and table.path == path
        np.testing.assert_array_equal(table.values, x)
    table = read_table(str(folder / f"part-00[12]{ext}"))
    np.testing.assert_array_equal(table.values, x[10:])


def test_shards_with_other_columns_name_the_odd_file(tmp_path):
    folder, _ = shards(tmp_path)
    odd = str(folder / "part-001.parquet")
    pq.write_table(pa.table({"a": [1.0], "b": [2.0], "z": [3.0]}), odd)
    with pytest.raises(DataError) as err:
        read_table(str(folder))
    assert str(err.value).startswith(f"{odd}: its columns (a, b, z) differ from those of {folder / 'part-000.parquet'}")


def test_shards_with_the_columns_in_another_order_or_type_are_aligned(tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    pq.write_table(pa.table({"a": [1, 2], "k": ["x", "y"]}), str(folder / "p0.parquet"))
    pq.write_table(pa.table({"k": [3, 4], "a": [0.5, 1.5]}), str(folder / "p1.parquet"))
    table = read_table(str(folder))
    assert table.names == ["a", "k"]
    np.testing.assert_array_equal(table.numeric([0])[:, 0], [1, 2, 0.5, 1.5])
    assert list(table.labels(1)) == ["x", "y", "3", "4"]


def test_a_bad_cell_in_a_later_shard_names_that_file_and_its_line(tmp_path):
    folder, _ = shards(tmp_path, ".csv")
    part = folder / "part-002.csv"
    lines = part.read_text().splitlines()
    lines[4] = "1,,2"
    part.write_text("\n".join(lines[:2] + [""] + lines[2:]) + "\n")
    assert numeric_error(str(folder)) == f"{part}: row 6, column 2 (b) is empty"


def test_missing_folders_and_globs(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="the folder holds no data files"):
        read_table(str(tmp_path / "empty"))
    with pytest.raises(DataError, match="no file matches"):
        read_table(str(tmp_path / "part-*.parquet"))
    np.save(tmp_path / "a.npy", np.ones((2, 2)))
    np.save(tmp_path / "b.npy", np.ones((2, 2)))
    with pytest.raises(DataError, match="read one at a time"):
        read_table(str(tmp_path / "*.npy"))


# --- NumPy files, and tables built in code -------------------------------------------------------


def test_npy_columns_are_views_and_report_non_finite_values(tmp_path):
    x = np.arange(12.0).reshape(4, 3)
    x[2, 1] = np.inf
    np.save(tmp_path / "d.npy", x)
    table = read_table(str(tmp_path / "d.npy"))
    assert table.names == ["c0", "c1", "c2"] and table.rows == 4
    np.testing.assert_array_equal(table.numeric([2, 0]), x[:, [2, 0]])
    with pytest.raises(DataError, match=r"d\.npy: row 3, column 2 \(c1\) is not finite: inf"):
        table.values
    ints = np.arange(6, dtype=np.int32).reshape(3, 2)
    table = Table(["p", "q"], list(ints.T), "mem")
    assert all(np.shares_memory(c, ints) for c in table.columns)
    assert table.values.dtype == np.float64 and table.rows == 3


# --- one rank's rows ------------------------------------------------------------------------------


def spans(n, p):
    """Each of p ranks' (lo, hi) of n rows, as np.array_split cuts them."""
    ends = np.cumsum([len(a) for a in np.array_split(np.arange(n), p)])
    return list(zip([0, *ends[:-1]], ends))


def csv_text(first, n, bad=(None, "")):
    """(CSV of rows first..first+n-1, each row's line): a quoted line break every 5th row, a blank line after every 7th."""
    text, lines = "a,k,note\n", []
    for i in range(first, first + n):
        lines.append(text.count("\n") + 1)
        note = '"two\nlines"' if i % 5 == 0 else f"n{i}"
        text += f"{bad[1] if i == bad[0] else i / 4},{i},{note}\n" + ("\n" if i % 7 == 0 else "")
    return text, lines


def ranked(tmp_path, kind, sizes=(11, 3, 16)):
    """A table of sum(sizes) rows as `kind`: one file, or a folder of len(sizes) shards of those sizes."""
    n = sum(sizes)
    table = pa.table({"a": np.arange(n) / 4, "k": np.arange(n), "note": [f"n{i}" for i in range(n)]})
    if kind == "csv":
        return write(tmp_path / "d.csv", csv_text(0, n)[0])
    if kind in ("parquet", "feather"):
        path = str(tmp_path / f"d.{kind}")
        (pq.write_table(table, path, row_group_size=4) if kind == "parquet" else
         feather.write_feather(table, path, chunksize=4))
        return path
    if kind in ("npy", "npz"):
        path = tmp_path / f"d.{kind}"
        x = np.column_stack([np.arange(n) / 4, np.arange(n)]).astype(np.float32)
        np.save(path, x) if kind == "npy" else np.savez(path, x=x)
        return str(path)
    folder = tmp_path / "shards"
    folder.mkdir()
    starts = np.cumsum([0, *sizes[:-1]])
    for i, (first, size) in enumerate(zip(starts, sizes)):
        if kind == "csv-shards":
            write(folder / f"part-{i}.csv", csv_text(first, size)[0])
        else:
            pq.write_table(table.slice(first, size), str(folder / f"part-{i}.parquet"), row_group_size=4)
    return str(folder)


@pytest.mark.parametrize("kind", ["csv", "parquet", "feather", "npy", "npz", "csv-shards", "parquet-shards"])
def test_each_rank_reads_its_own_rows_and_count_rows_counts_them(tmp_path, monkeypatch, kind):
    monkeypatch.setattr(readers, "BLOCK", 1 << 6)  # many blocks: some counted only, some read
    path = ranked(tmp_path, kind)
    whole = read_table(path)
    assert whole.rows == 30 and count_rows(path) == 30
    for p in (1, 2, 3):
        for lo, hi in spans(whole.rows, p):
            part = read_table(path, rows=(lo, hi))
            assert part.names == whole.names and part.rows == hi - lo
            for got, want in zip(part.columns, whole.columns):
                assert got.dtype == want.dtype
                np.testing.assert_array_equal(got, want[lo:hi])


def test_count_rows_skips_blank_lines_and_keeps_quoted_line_breaks(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "BLOCK", 1 << 6)
    path = write(tmp_path / "q.csv", '\n\na,s\n\n1,"x\n\ny"\n\n\n2,z\n3,\n\n')
    assert count_rows(path) == read_table(path).rows == 3


@pytest.mark.parametrize("folder", [False, True])
@pytest.mark.parametrize("cell, says", [("oops", "is not a number: 'oops'"), ("", "is empty")])
def test_a_bad_cell_in_a_ranks_rows_is_named_by_its_file_and_line(tmp_path, monkeypatch, folder, cell, says):
    monkeypatch.setattr(readers, "BLOCK", 1 << 6)
    bad = 15  # in rank 1's rows of 3: 10..19; in a folder, in the third shard (rows 14..29)
    if folder:
        path = ranked(tmp_path, "csv-shards")
        text, lines = csv_text(14, 16, bad=(bad, cell))
        where = write(tmp_path / "shards" / "part-2.csv", text)
        line = lines[bad - 14]
    else:
        text, lines = csv_text(0, 30, bad=(bad, cell))
        path = where = write(tmp_path / "d.csv", text)
        line = lines[bad]
    for rows in [None, (10, 20), (13, 19), (15, 16)]:
        with pytest.raises(DataError) as err:
            read_table(path, rows=rows).numeric([0, 1])
        # types come from the rows read: rows 15..15 hold text only
        assert str(err.value).startswith(f"{where}: row {line}, column 1 (a) "
                                         f"{'holds text' if rows == (15, 16) and cell else says}")
    # before a rank's rows a bad cell is counted over, not converted, so not seen; after them, not read
    for rows in [(0, 10), (20, 30)]:
        np.testing.assert_array_equal(read_table(path, rows=rows).numeric([1])[:, 0], np.arange(*rows))


def test_a_row_with_the_wrong_number_of_cells_before_a_ranks_rows_is_still_found(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "BLOCK", 1 << 6)
    text, lines = csv_text(0, 30)
    text = text.replace("\n1.25,5,", "\n1.25,5,x,")
    path = write(tmp_path / "d.csv", text)
    with pytest.raises(DataError, match=rf"d\.csv: row {lines[5]} has 4 cells, the header has 3"):
        read_table(path, rows=(20, 30))
    with pytest.raises(DataError, match=rf"row {lines[5]} has 4 cells"):
        count_rows(path)


def test_rows_past_the_end_or_out_of_order(tmp_path):
    path = ranked(tmp_path, "parquet")
    with pytest.raises(DataError, match=r"d\.parquet: has fewer than the 31 data rows that rows=\(20, 31\) reads"):
        read_table(path, rows=(20, 31))
    with pytest.raises(DataError, match="fewer than the 41 data rows"):
        read_table(path, rows=(40, 41))
    with pytest.raises(ValueError, match="0 <= lo < hi"):
        read_table(path, rows=(5, 5))


def test_only_the_files_and_row_groups_holding_the_rows_are_read(tmp_path, monkeypatch):
    path = ranked(tmp_path, "parquet-shards")  # shards of 11, 3 and 16 rows, in row groups of 4
    opened, groups = [], []
    pieces, read_row_group = readers._pieces, pq.ParquetFile.read_row_group
    monkeypatch.setattr(readers, "_pieces", lambda f, skip, **kw: opened.append(os.path.basename(f)) or pieces(f, skip, **kw))
    monkeypatch.setattr(pq.ParquetFile, "read_row_group",
                        lambda self, i, **kw: groups.append(i) or read_row_group(self, i, **kw))
    np.testing.assert_array_equal(read_table(path, rows=(12, 13)).columns[1], [12])
    assert opened == ["part-0.parquet", "part-1.parquet"] and groups == [0, 0, 0]  # one row group's 3 columns


def test_csv_blocks_before_the_rows_are_counted_not_converted(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "BLOCK", 1 << 6)
    path = ranked(tmp_path, "csv")
    parses = []
    read_csv = readers.pacsv.read_csv

    def spy(*args, convert_options=None, **kwargs):
        parses.append("count" if convert_options is None or convert_options.include_columns else "convert")
        return read_csv(*args, convert_options=convert_options, **kwargs)

    monkeypatch.setattr(readers.pacsv, "read_csv", spy)
    assert count_rows(path) == 30 and parses.count("count") > 5 and "convert" not in parses
    parses.clear()
    read_table(path, rows=(29, 30))
    assert parses.count("convert") == 1  # the last block alone
