"""The SyncBatchNorm benchmark on the CPU: its own one-process gloo group, only our layer (PyTorch's
refuses CPU tensors in a group), the group torn down afterwards. CUDA: tests/cuda."""

import torch.distributed as dist

from ccnet.bench.sync_batchnorm import sync_batchnorm_benchmark, sync_batchnorm_table


def test_runs_ours_in_a_group_of_one_and_cleans_up():
    result = sync_batchnorm_benchmark("cpu", batch=2, channels=8, size=(9, 7), repeats=2, warmup=1)
    assert not dist.is_initialized()
    assert result["world_size"] == 1 and result["shape"] == [2, 8, 9, 7]
    (row,) = result["rows"]
    assert row["name"] == "ours" and row["max_abs_diff"] == 0.0
    assert row["ms"] > 0 and row["peak_bytes"] >= 2 * 8 * 9 * 7 * 4  # at least the output, float32
    table = sync_batchnorm_table(result)
    assert "| ours |" in table and "1.00x" in table


def test_command_writes_json_and_markdown(tmp_path, capsys):
    import json

    from ccnet.bench.sync_batchnorm import main

    assert main(["--device", "cpu", "--batch", "1", "--channels", "4", "--size", "5", "6", "--repeats", "1",
                 "--output", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "sync_batchnorm.json").read_text())
    assert result["shape"] == [1, 4, 5, 6] and [r["name"] for r in result["rows"]] == ["ours"]
    assert (tmp_path / "sync_batchnorm.md").read_text().strip() == capsys.readouterr().out.strip()
