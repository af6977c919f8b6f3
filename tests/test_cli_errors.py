"""User errors (CCNetError) print one line and exit 2; anything else is a bug and keeps its
traceback. ``--traceback`` and ``CCNET_DEBUG=1`` show the traceback of user errors too."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ccnet.cli import main
from ccnet.errors import CCNetError, InputError

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _voc_aug_without_sbd(tmp_path) -> list[str]:
    return ["prepare", "voc-aug", str(tmp_path / "voc")]  # a user error: the SBD root is missing


def test_a_user_error_is_one_line_and_exit_status_2(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CCNET_DEBUG", raising=False)
    assert main(_voc_aug_without_sbd(tmp_path)) == 2
    err = capsys.readouterr().err
    assert err.strip() == ("ccnet prepare: error: voc-aug needs the SBD root as a second path: "
                           "ccnet prepare voc-aug VOC_ROOT SBD_ROOT")
    assert "Traceback" not in err


@pytest.mark.parametrize("bug", [ValueError("a bug, not the user's mistake"), KeyError("missing_internal_key")])
def test_an_internal_bug_propagates_and_is_not_turned_into_one_line(bug, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CCNET_DEBUG", raising=False)
    from ccnet.data import prepare

    def broken(*args, **kwargs):
        raise bug

    monkeypatch.setattr(prepare, "prepare_cityscapes", broken)
    with pytest.raises(type(bug)) as caught:
        main(["prepare", "cityscapes", str(tmp_path / "cityscapes")])
    assert caught.value is bug and not isinstance(caught.value, CCNetError)
    assert "error:" not in capsys.readouterr().err


@pytest.mark.parametrize("how", ["flag", "env"])
def test_traceback_flag_and_ccnet_debug_reraise_user_errors(how, tmp_path, capsys, monkeypatch):
    argv = _voc_aug_without_sbd(tmp_path)
    if how == "flag":
        monkeypatch.delenv("CCNET_DEBUG", raising=False)
        argv = ["--traceback", *argv]
    else:
        monkeypatch.setenv("CCNET_DEBUG", "1")
    with pytest.raises(InputError, match="voc-aug needs the SBD root"):
        main(argv)
    assert "error:" not in capsys.readouterr().err


def test_ccnet_debug_0_keeps_the_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CCNET_DEBUG", "0")
    assert main(_voc_aug_without_sbd(tmp_path)) == 2
    assert "Traceback" not in capsys.readouterr().err


def _run_ccnet(args: list[str], debug: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CCNET_DEBUG"}
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    if debug is not None:
        env["CCNET_DEBUG"] = debug
    return subprocess.run([sys.executable, "-m", "ccnet.cli", *args], env=env, capture_output=True, text=True,
                          timeout=300)


def test_the_command_line_shows_a_traceback_for_a_bug_and_for_a_user_error_under_ccnet_debug(tmp_path):
    # A bug: a plain KeyError raised inside the command keeps its traceback and exit status 1.
    bug = tmp_path / "bug.py"
    bug.write_text("import sys\n"
                   "from ccnet.data import prepare\n"
                   "def broken(*args, **kwargs):\n"
                   "    raise KeyError('missing_internal_key')\n"
                   "prepare.prepare_cityscapes = broken\n"
                   "from ccnet.cli import main\n"
                   "raise SystemExit(main(sys.argv[1:]))\n")
    env = {k: v for k, v in os.environ.items() if k != "CCNET_DEBUG"}
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    run = subprocess.run([sys.executable, str(bug), "prepare", "cityscapes", str(tmp_path / "cs")], env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 1
    assert "Traceback (most recent call last)" in run.stderr and "KeyError: 'missing_internal_key'" in run.stderr

    # A user error: one line and exit status 2, or its traceback with CCNET_DEBUG=1.
    plain = _run_ccnet(_voc_aug_without_sbd(tmp_path), debug=None)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    assert plain.stderr.strip().startswith("ccnet prepare: error: voc-aug needs the SBD root")
    debug = _run_ccnet(_voc_aug_without_sbd(tmp_path), debug="1")
    assert debug.returncode == 1
    assert "Traceback (most recent call last)" in debug.stderr and "InputError: voc-aug needs" in debug.stderr
