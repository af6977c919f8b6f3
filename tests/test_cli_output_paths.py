"""Every command checks its output path before any work: one line, exit 2, nothing written."""

import pytest

from ccnet.cli import main


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--output", "{file}"], "--output {file}: is a file, not a folder"),
        (["train", "--output", "{file}/run"], "{file} is a file, so nothing can be written under it"),
        (["predict", "--checkpoint", "/no/such.pt", "x.png", "--output", "{file}"], "--output {file}: is a file"),
        (["visualize-attention", "/no/such.pt", "x.png", "--pixel", "1,1", "--output", "{file}"],
         "--output {file}: is a file"),
        (["reproduce", "--output", "{file}"], "--output {file}: is a file"),
        (["prepare", "synthetic-coco", "{file}"], "ROOT {file}: is a file"),
        (["convert", "/no/such.pt", "{file}"], "DST {file}: is a file"),
        (["bench", "op", "--output", "{file}"], "--output {file}: is a file"),
        (["export", "/no/such.pt", "{dir}"], "OUTPUT {dir}: is a folder; give a file name"),
        (["evaluate", "--checkpoint", "/no/such.pt", "--output", "{dir}"], "--output {dir}: is a folder"),
        (["evaluate", "--checkpoint", "/no/such.pt", "--output", "{file}/m.json"], "{file} is a file"),
    ],
)
def test_a_wrong_kind_of_output_path_is_refused_first(argv, message, tmp_path, capsys):
    file, folder = tmp_path / "a_file", tmp_path / "a_dir"
    file.write_text("mine")
    folder.mkdir()
    argv = [a.format(file=file, dir=folder) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message.format(file=file, dir=folder) in err, err
    assert file.read_text() == "mine" and not list(folder.iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_dir", "a_file"]
