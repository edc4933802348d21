"""`gpunet predict`, `evaluate` and `info`: a saved model used on a table, and what a model file holds."""

import io
import json

import click

from gpunet import checkpoint, inference
from gpunet.cli import backend_options, delimiter_option, use_backend
from gpunet.files import atomic_write, check_writable
from gpunet.report import class_report, format_rows, model_report
from gpunet.tabular import read_table


def model_data_options(f):
    """--model, --data, --target, --by-position and --delimiter, shared by predict and evaluate."""
    f = delimiter_option(f)
    f = click.option("--by-position", is_flag=True, help="Take the inputs by position (the training order), "
                     "not by name; a file without names (.npy, .npz) always is.")(f)
    f = click.option("--target", default=None, help="The file's target column(s), as train's --target, when its "
                     "names differ from the model's.")(f)
    f = click.option("--data", "data_path", required=True,
                     help="A table (a file, folder or glob, as train's --data): the model's input columns are "
                     "taken by name, prepared as in training; other columns are ignored.")(f)
    return click.option("--model", "model_path", required=True, type=click.Path(dir_okay=False),
                        help="A model saved by gpunet train --save.")(f)


def model_columns(model, data_path, delimiter, with_targets, target, by_position, quiet=False):
    """(inputs, targets or None, table): the model's columns of the table at `data_path`, its notes on stderr."""
    table = read_table(data_path, delimiter=delimiter)
    x, y, notes = inference.columns(model, table, with_targets, target, by_position)
    for note in [] if quiet else notes:
        click.echo(note, err=True)
    return x, y, table


@click.command("predict")
@model_data_options
@click.option("--out", "out_path", type=click.Path(dir_okay=False), default=None,
              help="Write the predictions here as CSV (atomically)  [default: stdout]")
@click.option("--proba", is_flag=True, help="A classifier: also one probability column per class, named by the class.")
@backend_options
def predict_cmd(model_path, data_path, target, by_position, delimiter, out_path, proba, backend, device):
    """Predict with a saved model: a regressor's targets in their own units, a classifier's label per row.

    The columns the model was trained with --keep (an identifier, say) come first in the output.
    """
    if out_path:
        check_writable(out_path, "--out")
    model = checkpoint.load(model_path)
    if proba and model.classes is None:
        raise click.UsageError("--proba is for classifiers (trained with --loss ce); this model is a regressor")
    x, _, table = model_columns(model, data_path, delimiter, False, target, by_position)
    y = inference.outputs(model, x, use_backend(backend, device))
    header, cols = inference.prediction_columns(model, y, proba)
    kept, kept_cols = inference.kept_columns(model, table)
    header, cols = kept + header, kept_cols + cols
    if out_path is None:
        out = io.BytesIO()
        inference.write_csv(out, header, cols, model.dtype)
        click.echo(out.getvalue().decode(), nl=False)
        return

    def write(tmp):
        with open(tmp, "wb") as f:
            inference.write_csv(f, header, cols, model.dtype)

    atomic_write(out_path, write, suffix=".csv")


@click.command("evaluate")
@model_data_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@backend_options
def evaluate_cmd(model_path, data_path, target, by_position, delimiter, as_json, backend, device):
    """Score a saved model on data with known targets.

    A regressor: its loss, and MSE and R-squared per target. A classifier: accuracy, log-loss,
    precision, recall and F1 per class, and the confusion matrix.
    """
    model = checkpoint.load(model_path)
    x, y, _ = model_columns(model, data_path, delimiter, True, target, by_position, quiet=as_json)
    s = inference.scores(model, y, inference.outputs(model, x, use_backend(backend, device, quiet=as_json)))
    if as_json:
        click.echo(json.dumps(s, indent=2))
        return
    if model.classes is None:
        click.echo(f"{s['rows']} rows, loss ({s['loss_name']}, standardised targets): {s['loss']:.7g}")
        click.echo(format_rows(("target", "MSE", "R-squared"),
                               [(t["target"], f"{t['mse']:.7g}", f"{t['r2']:.4f}") for t in s["targets"]]))
        return
    if s["unknown_labels"]:
        click.echo(f"Warning: {s['unknown_labels']} rows have a label the model does not know; they count as "
                   "misclassified", err=True)
    click.echo(class_report(s))


@click.command("info")
@click.argument("model_path", metavar="MODEL", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def info_cmd(model_path, as_json):
    """What a model file holds: layers, activation, task, classes, input columns and their preparation,
    training settings, final figures, format version."""
    d = checkpoint.describe(model_path)
    click.echo(json.dumps(d, indent=2) if as_json else model_report(d))
