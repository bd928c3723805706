"""cifar.bench: the table it prints, the time budget, and its argument checks (CPU, tiny nets)."""
import pytest

from cifar import bench


def _table(text):
    return [line for line in text.splitlines() if line.startswith("| ")]


def test_markdown_table_has_one_row_per_net(capsys):
    bench.main(["--quick", "--markdown", "--steps", "1", "--device", "cpu"])
    rows = _table(capsys.readouterr().out)
    assert rows[0].startswith("| net | params | batch | precision | mode | train /s | sample /s | unit |")
    assert [r.split(" | ")[0] for r in rows[1:]] == ["| unet tiny", "| transformer tiny"]
    assert all(float(r.split(" | ")[5].replace(",", "")) > 0 for r in rows[1:])


def test_rows_past_the_budget_are_listed_as_skipped(capsys):
    bench.main(["--quick", "--markdown", "--steps", "1", "--device", "cpu", "--budget-s", "1e-9"])
    rows = _table(capsys.readouterr().out)[1:]   # below the header
    assert len(rows) == 2 and all("skipped (budget)" in r for r in rows)


@pytest.mark.parametrize("flag, value", [("--budget-s", "0"), ("--budget-s", "nan"), ("--steps", "0")])
def test_bad_arguments_are_refused(flag, value, capsys):
    with pytest.raises(SystemExit):
        bench.main(["--quick", flag, value])
    assert flag in capsys.readouterr().err
