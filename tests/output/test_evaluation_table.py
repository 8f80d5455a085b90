from ddpm_lens.output.evaluation_table import best_rows, comparison_text, table_grid


def row(run, epoch, fid, step=None, precision=0.5):
    return {"run": run, "checkpoint": f"{run}_{epoch}.pt", "epoch": epoch, "step": step, "fid": fid,
            "precision": precision}  # fmt: skip


ROWS = [row("Baseline", 10, 30.0), row("Baseline", 20, 17.02), row("Curriculum", 10, 25.0, precision=0.7)]


def test_checkpoints_are_rows_runs_are_columns_and_each_runs_best_is_named():
    text = comparison_text(ROWS, header=["Reference: dataset:celeba:test"])
    lines = text.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("Checkpoint"))
    assert lines[head].split("|")[1:] == ["     Baseline ", "   Curriculum"]
    assert lines[head + 2].split() == ["epoch", "10", "|", "30.00", "|", "25.00"]
    assert lines[head + 3].split() == ["epoch", "20", "|", "17.02", "|", "—"]
    assert "  Baseline:   17.02 @ epoch 20" in text and "  Curriculum: 25.00 @ epoch 10" in text
    assert "Precision" in text and "Curriculum: 0.7000 @ epoch 10" in text  # higher is better there


def test_two_checkpoints_of_one_epoch_are_told_apart_by_step():
    rows = [row("a", 1, 5.0, step=10), row("a", 1, 4.0, step=20)]
    runs, labels, cells = table_grid(rows, "fid")
    assert labels == ["epoch 1, step 10", "epoch 1, step 20"] and cells[("epoch 1, step 20", "a")] == 4.0
    assert best_rows(rows, "fid")["a"]["step"] == 20
