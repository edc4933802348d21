"""What the command line prints: the tutorial's log line, durations, tables, and the bench report."""


def format_loss_line(epoch, loss, val_loss=None, accuracy=None, val_accuracy=None):
    """The tutorial's log line: `Epoch:  10    Loss:  318.4779` (seven significant digits), then the
    validation loss in the same format and the accuracies (four decimals) where there are some."""
    line = f"Epoch:  {epoch}    Loss:  {loss:.7g}"
    for label, value, fmt in (("Val loss", val_loss, ".7g"), ("Acc", accuracy, ".4f"), ("Val acc", val_accuracy, ".4f")):
        if value is not None:
            line += f"    {label}:  {value:{fmt}}"
    return line


def summary_line(result):
    """The line after training: where, how fast, the final loss, and the epoch early stopping kept."""
    c = result.config
    defaults = ", table defaults" if c.defaults == "table" else ""
    line = (f"Trained on {result.backend} ({result.device}), {c.dtype}, seed {c.seed}{defaults}: "
            f"{result.epochs_run} epochs in {format_seconds(result.train_seconds)} "
            f"({format_seconds(result.seconds_per_epoch)} per epoch), final loss {result.final_loss:.7g}")
    if result.best_epoch is not None:
        why = "stopped early; " if result.stopped_early else ""
        line += (f"; {why}kept epoch {result.best_epoch} (loss {result.best_loss:.7g}, validation loss "
                 f"{result.best_val_loss:.7g})")
    return line


def model_report(d):
    """What a model file holds (gpunet.checkpoint.describe) as text."""
    classes = f", {len(d['classes'])} classes: {', '.join(map(str, d['classes']))}" if d["classes"] else ""
    lines = [f"{d['file']}: gpunet model format {d['format']} (gpunet {d['gpunet_version']})",
             f"layers {'-'.join(map(str, d['layers']))}, {d['activation']}, {d['loss']} loss, {d['task']}{classes}",
             f"targets: {', '.join(d['targets'])}"]
    rows = [(col["name"], col["kind"], _preparation(col)) for col in d["inputs"]]
    lines.append(format_rows(("input column", "kind", "preparation"), rows))
    if d["keep"]:
        lines.append(f"kept for predict's output: {', '.join(d['keep'])}")
    lines.append("training: " + ", ".join(f"{k} {v}" for k, v in d["training"].items() if v is not None))
    if d["metrics"]:
        lines.append("final: " + ", ".join(f"{k} {v:.7g}" if isinstance(v, float) else f"{k} {v}"
                                           for k, v in d["metrics"].items()))
    return "\n".join(lines)


def _preparation(col):
    """One input column's preparation in a few words."""
    if col["kind"] == "number":
        return "missing cells refused" if col["fill"] is None else f"missing cells filled with {col['fill']:.7g}"
    cats = [c if c else "(missing)" for c in col["categories"]]
    shown = ", ".join(cats[:8]) + (f", ... ({len(cats)} in all)" if len(cats) > 8 else "")
    return f"one-hot over {shown}"


def format_seconds(s):
    """A duration with three significant digits in s, ms, us or ns."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s / 1e-9:.3g} ns"


def format_rows(header, rows):
    """A plain left-aligned text table."""
    rows = [header, *rows]
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(header))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def class_report(s):
    """A classifier's scores (gpunet.predict.class_scores) as text: accuracy, log-loss, per class, confusion."""
    lines = [f"{s['rows']} rows, accuracy {s['accuracy']:.4f}, log-loss {s['log_loss']:.7g}"]
    lines.append(format_rows(("class", "precision", "recall", "F1", "support"),
                             [(c["class"], f"{c['precision']:.4f}", f"{c['recall']:.4f}", f"{c['f1']:.4f}", c["support"])
                              for c in s["per_class"]]))
    lines.append("confusion matrix (rows: true class, columns: predicted)")
    names = [str(c) for c in s["classes"]]
    lines.append(format_rows(("", *names), [(name, *row) for name, row in zip(names, s["confusion"])]))
    return "\n".join(lines)


def describe(config):
    """One line saying what a Config trains."""
    hidden = ",".join(map(str, config.hidden))
    batch = f", batches of {config.batch_size}" if config.batch_size else ""
    return (f"n={config.n} d_in={config.d_in} hidden={hidden} d_out={config.d_out}, {config.epochs} epochs, "
            f"{config.optimizer} lr {config.lr:g}{batch}, {config.loss}, {config.init} init, {config.dtype}, "
            f"seed {config.seed}")


def bench_table(report):
    """The human-readable lines of a bench report."""
    rows = []
    for r in report["records"]:
        pct = f"{r['pct_of_ceiling']:.0f}%" if r.get("pct_of_ceiling") is not None else "-"
        mem = f"{r['peak_bytes'] / r['needed_bytes']:.2f}x of {r['needed_bytes'] / 2**20:.3g} MiB" if "peak_bytes" in r else "-"
        rows.append((r["workload"], r["system"], r["backend"], format_seconds(r["median_s"]),
                     f"{format_seconds(r['min_s'])}..{format_seconds(r['max_s'])}",
                     format_seconds(r["seconds_per_epoch"]), f"{r['gflops']:.3g}", pct, mem, f"{r['final_loss']:.7g}"))
    lines = [format_rows(("workload", "system", "backend", "median", "min..max", "per epoch", "GFLOP/s", "of ceiling",
                          "peak memory / needed", "final loss"), rows)]
    lines.append("matrix-product ceiling (float32): " + ", ".join(
        f"{k} {v:.1f} GFLOP/s" for k, v in report["ceilings_gflops"].items()))
    for a in report["agreement"]:
        if not a["ok"]:
            lines.append(f"DISAGREE: {a['workload']} {a['a']} vs {a['b']} {a['quantity']}: "
                         f"max rel diff {a['max_rel']:.3g} > {a['tol']:g}")
    if report["agreement"] and all(a["ok"] for a in report["agreement"]):
        lines.append(f"agreement: all {len(report['agreement'])} comparisons within tolerance")
    return "\n".join(lines)
