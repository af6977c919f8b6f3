"""The library logs through its module loggers and prints nothing; ``ccnet`` shows the records."""

import logging

import pytest

from ccnet.bench import attention
from ccnet.cli import main
from ccnet.cli.logs import ConsoleHandler, configure_logging


@pytest.fixture
def no_console_handler():
    """The root logger without the handler an earlier ``ccnet`` call in this process installed."""
    root = logging.getLogger()
    removed = [h for h in root.handlers if isinstance(h, ConsoleHandler)]
    for handler in removed:
        root.removeHandler(handler)
    level = logging.getLogger("ccnet").level
    logging.getLogger("ccnet").setLevel(logging.NOTSET)
    yield
    for handler in root.handlers:
        if isinstance(handler, ConsoleHandler):
            root.removeHandler(handler)
    for handler in removed:
        root.addHandler(handler)
    logging.getLogger("ccnet").setLevel(level)


def test_a_library_call_logs_through_its_logger_and_prints_nothing(no_console_handler, monkeypatch, capsys, caplog):
    monkeypatch.setitem(attention.FEATURE_SIZES, "tiny", (5, 6))
    with caplog.at_level(logging.INFO, logger="ccnet"):
        rows = attention.op_benchmark(["tiny"], batches=[1], channels=[8], qk_channels=4, layouts=["nchw"],
                                      repeats=1)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    assert rows and [r.name for r in caplog.records] == ["ccnet.bench.attention"] * len(rows)
    assert caplog.records[0].getMessage().startswith("tiny B=1 C=8 nchw: fwd ")


def test_the_command_line_prints_info_on_stdout_and_warnings_on_stderr(no_console_handler, capsys):
    configure_logging()
    configure_logging()  # idempotent: one handler
    assert sum(isinstance(h, ConsoleHandler) for h in logging.getLogger().handlers) == 1
    logging.getLogger("ccnet.engine.trainer").info("training x")
    logging.getLogger("ccnet.data").warning("odd file")
    logging.getLogger("somebody.else").info("not ours")
    captured = capsys.readouterr()
    assert captured.out == "training x\n" and captured.err == "odd file\n"


def test_ccnet_bench_still_prints_its_lines(no_console_handler, monkeypatch, capsys):
    monkeypatch.setitem(attention.FEATURE_SIZES, "tiny", (5, 6))
    assert main(["bench", "op", "--sizes", "tiny", "--batches", "1", "--channels", "8", "--repeats", "1",
                 "--device", "cpu", "--no-memory"]) == 0
    assert "tiny B=1 C=8 nchw: fwd " in capsys.readouterr().out
