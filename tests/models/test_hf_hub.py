"""Hub repo ids: loading from the huggingface_hub cache offline, pushing with a model card, and
the one-line errors. No request leaves the machine: offline mode is on throughout and the
upload calls of HfApi are replaced by recorders."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from ccnet.cli import main
from ccnet.interop import load_pretrained
from ccnet.models import CCNet, CCNet3D
from ccnet.models.hf_hub import is_repo_id

huggingface_hub = pytest.importorskip("huggingface_hub")
from huggingface_hub import constants  # noqa: E402

COMMIT = "0123456789abcdef0123456789abcdef01234567"
NAMES = ("background", "cat", "dog")
SRC = Path(__file__).parents[2] / "src"


def _tiny() -> CCNet:
    torch.manual_seed(0)
    model = CCNet(3, backbone="resnet18", stem_widths=(8, 8, 16), head_channels=16, aux_channels=8)
    with torch.no_grad():
        model.head.cca.gamma.fill_(0.5)
    return model.eval()


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty Hub cache, offline mode on (the environment and huggingface_hub's constants,
    which it reads at import)."""
    root = tmp_path / "hf-cache"
    root.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(root))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(root))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return root


def _lay_out(cache: Path, repo_id: str, folder: Path | None, files=("model.safetensors", "config.json"),
             ref: str = "main", commit: str = COMMIT) -> Path:
    """The cache of ``repo_id`` as huggingface_hub writes it: blobs, refs/<ref>, snapshots/<commit>."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / ref).write_text(commit)
    (repo / "blobs").mkdir(exist_ok=True)
    for name in files:
        data = (folder / name).read_bytes() if folder is not None else b"# a model card\n"
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / name).symlink_to(os.path.relpath(blob, snapshot))
    return snapshot


def test_repo_id_shape(tmp_path, monkeypatch):
    assert is_repo_id("org/name") and is_repo_id("my-org/ccnet_r101.cityscapes")
    assert not is_repo_id("org/name/extra") and not is_repo_id("./model") and not is_repo_id("/abs/path")
    assert not is_repo_id("runs/model.pth")  # a mistyped weight file, not a repo
    assert not is_repo_id(Path("org/name"))  # a Path is always local
    monkeypatch.chdir(tmp_path)
    (tmp_path / "org" / "name").mkdir(parents=True)
    assert not is_repo_id("org/name")  # an existing local path wins


def test_load_from_the_hub_cache_offline(tmp_path, cache):
    model = _tiny()
    folder = model.save_pretrained(tmp_path / "m", class_names=NAMES)
    _lay_out(cache, "org/tiny", folder)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)["out"]
    for loaded in (CCNet.from_pretrained("org/tiny"), load_pretrained("org/tiny"),
                   CCNet.from_pretrained("org/tiny", revision=COMMIT)):
        assert loaded.class_names == NAMES and loaded.config == model.config
        with torch.no_grad():
            assert torch.equal(loaded(x)["out"], expected)
    assert isinstance(load_pretrained("org/tiny", architecture="CCNet3D"), CCNet3D)


def test_revision_reads_its_ref(tmp_path, cache):
    model = _tiny()
    folder = model.save_pretrained(tmp_path / "m")
    _lay_out(cache, "org/tiny", folder, ref="v1", commit="f" * 40)
    assert CCNet.from_pretrained("org/tiny", revision="v1").config == model.config
    assert CCNet.from_pretrained("org/tiny", revision="f" * 40).config == model.config  # a commit hash
    with pytest.raises(FileNotFoundError, match="org/tiny@" + "e" * 40):
        CCNet.from_pretrained("org/tiny", revision="e" * 40)  # a commit not in the cache
    with pytest.raises(FileNotFoundError, match="org/tiny"):
        CCNet.from_pretrained("org/tiny")  # no refs/main in the cache, and offline


def test_ccnet3d_from_the_hub(tmp_path, cache):
    video = CCNet3D(3, backbone="resnet18", stem_widths=(8, 8, 16), head_channels=16, aux_channels=8).eval()
    folder = video.save_pretrained(tmp_path / "v")
    _lay_out(cache, "org/video", folder)
    assert isinstance(CCNet3D.from_pretrained("org/video"), CCNet3D)
    assert isinstance(load_pretrained("org/video"), CCNet3D)


def test_local_path_wins_over_repo_id(tmp_path, cache, monkeypatch):
    local = _tiny().save_pretrained(tmp_path / "org" / "tiny", class_names=NAMES)
    other = CCNet(2, backbone="resnet18", stem_widths=(8, 8, 16), head_channels=16, aux_channels=8)
    _lay_out(cache, "org/tiny", other.save_pretrained(tmp_path / "hub-copy"))
    monkeypatch.chdir(tmp_path)
    assert CCNet.from_pretrained("org/tiny").num_classes == 3
    assert load_pretrained("org/tiny").num_classes == 3
    assert local.is_dir()


def test_errors_are_one_line(tmp_path, cache):
    with pytest.raises(FileNotFoundError, match=r"^org/absent: no such local path, and the Hub repo is not in "
                                                r"the cache") as info:
        CCNet.from_pretrained("org/absent")
    assert "\n" not in str(info.value)
    _lay_out(cache, "org/not-ccnet", None, files=("README.md",))
    with pytest.raises(FileNotFoundError, match=r"org/not-ccnet: the Hub repo holds no config.json or "
                                                r"model.safetensors; it is not a ccnet model"):
        load_pretrained("org/not-ccnet")
    with pytest.raises(ValueError, match="revision='v2' applies to a Hub repo id"):
        CCNet.from_pretrained(tmp_path / "missing", revision="v2")


def test_without_the_extra(tmp_path, monkeypatch, cache, capsys):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import fails as if not installed
    with pytest.raises(ImportError, match=r"needs huggingface_hub: pip install 'ccnet-pytorch\[hub\]'"):
        CCNet.from_pretrained("org/tiny")
    folder = _tiny().save_pretrained(tmp_path / "m")
    assert main(["push-to-hub", str(folder), "org/tiny"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pip install 'ccnet-pytorch[hub]'" in err, err


def test_hf_hub_offline_environment_is_respected(tmp_path):
    """A fresh interpreter, configured only by the environment, loads from the cache; importing
    ccnet does not import huggingface_hub."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    _lay_out(cache, "org/tiny", _tiny().save_pretrained(tmp_path / "m", class_names=NAMES))
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(SRC)}
    code = ("import sys, ccnet; assert 'huggingface_hub' not in sys.modules, 'imported eagerly'; "
            "print(ccnet.CCNet.from_pretrained('org/tiny').class_names)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(NAMES)


class _Recorder:
    """HfApi.create_repo and upload_folder replaced: the calls and the uploaded files are kept."""

    def __init__(self, monkeypatch):
        self.repos, self.uploads = [], []
        monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", lambda api, *a, **k: self.create_repo(*a, **k))
        monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", lambda api, **k: self.upload_folder(**k))

    def create_repo(self, repo_id, **kwargs):
        self.repos.append((repo_id, kwargs))
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        files = {p.name: p.read_bytes() for p in Path(folder_path).iterdir()}
        self.uploads.append((repo_id, files, kwargs))
        return huggingface_hub.CommitInfo(commit_url=f"https://huggingface.co/{repo_id}/commit/{COMMIT}",
                                          commit_message=kwargs.get("commit_message"), commit_description="",
                                          oid=COMMIT)


def _front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def test_push_to_hub_uploads_model_and_card(tmp_path, cache, monkeypatch):
    recorder = _Recorder(monkeypatch)
    model = _tiny()
    model.push_to_hub("org/tiny", class_names=NAMES, inference={"dataset": "pets"},
                      metrics={"miou": 0.5, "pixel_accuracy": 0.9, "mean_accuracy": 0.6, "iou": [0.8, 0.4, 0.3]})
    assert recorder.repos == [("org/tiny", {"private": None, "exist_ok": True})]
    (repo_id, files, kwargs), = recorder.uploads
    assert repo_id == "org/tiny" and sorted(files) == ["README.md", "config.json", "model.safetensors"]
    assert kwargs["commit_message"] == "Upload ccnet model"
    meta = _front_matter(files["README.md"].decode())
    assert meta["library_name"] == "ccnet-pytorch" and "semantic-segmentation" in meta["tags"]
    assert meta["datasets"] == ["pets"] and meta["metrics"] == ["mean_iou", "accuracy", "mean_accuracy"]
    results = meta["model-index"][0]["results"][0]
    assert [m["value"] for m in results["metrics"]] == [50.0, 90.0, 60.0]
    card = files["README.md"].decode()
    assert "| 1 | cat | 40.00 |" in card and 'ccnet.CCNet.from_pretrained("org/tiny")' in card
    assert huggingface_hub.ModelCard(card).data.library_name == "ccnet-pytorch"  # the Hub's parser reads it
    # the uploaded files are a loadable model
    pushed = tmp_path / "pushed"
    pushed.mkdir()
    for name in ("config.json", "model.safetensors"):
        (pushed / name).write_bytes(files[name])
    assert json.loads(files["config.json"])["model"] == model.config
    assert CCNet.from_pretrained(pushed).class_names == NAMES


def test_cli_push_reads_the_runs_metrics(tmp_path, cache, monkeypatch, capsys):
    recorder = _Recorder(monkeypatch)
    run = tmp_path / "run"
    _tiny().save_pretrained(run / "model", class_names=NAMES, inference={"dataset": "pets"})
    (run / "metrics.json").write_text(json.dumps({"iteration": 100, "miou": 0.25, "pixel_accuracy": 0.75,
                                                  "mean_accuracy": 0.5, "iou": [0.5, 0.25, 0.0]}))
    assert main(["push-to-hub", str(run / "model"), "org/run", "--private", "--message", "first"]) == 0
    assert "pushed" in capsys.readouterr().out
    assert recorder.repos == [("org/run", {"private": True, "exist_ok": True})]
    (_, files, kwargs), = recorder.uploads
    assert kwargs["commit_message"] == "first"
    meta = _front_matter(files["README.md"].decode())
    assert meta["model-index"][0]["results"][0]["metrics"][0] == {"type": "mean_iou", "name": "mIoU", "value": 25.0}
    assert "after 100 iterations" in files["README.md"].decode()


def test_cli_push_refuses_bad_input(tmp_path, cache, monkeypatch, capsys):
    recorder = _Recorder(monkeypatch)
    folder = _tiny().save_pretrained(tmp_path / "m")
    assert main(["push-to-hub", str(tmp_path / "absent"), "org/x"]) == 2
    assert main(["push-to-hub", str(folder), "not a repo"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("ccnet push-to-hub: error: ") for line in err)
    assert "'not a repo': not a Hub repo id" in err[1]
    assert not recorder.repos and not recorder.uploads


def test_ccnet3d_from_a_2d_repo(tmp_path, cache):
    _lay_out(cache, "org/tiny", _tiny().save_pretrained(tmp_path / "m"), ref="v1", commit="e" * 40)
    assert isinstance(CCNet3D.from_pretrained("org/tiny", revision="v1"), CCNet3D)


def test_bad_repo_id_is_one_line(cache):
    with pytest.raises(ValueError, match=r"^org/bad--name: not a valid Hub repo id \(") as info:
        load_pretrained("org/bad--name")
    assert "\n" not in str(info.value)


def test_push_through_the_http_layer(tmp_path, monkeypatch):
    """push_to_hub against huggingface_hub's real HfApi, its HTTP client answering from a recorder:
    no request leaves the machine, and the commit's body holds the three files."""
    import base64

    httpx2 = pytest.importorskip("httpx2", reason="huggingface_hub before 2.x has another HTTP layer")
    from huggingface_hub.utils import _http

    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    requests, commits = [], []

    def answer(request):
        path = request.url.path
        requests.append((request.method, path))
        if path == "/api/repos/create":
            return httpx2.Response(200, json={"url": "https://huggingface.co/org/tiny", "name": "org/tiny"})
        if path == "/api/validate-yaml":
            return httpx2.Response(200, json={})
        if path == "/api/models/org/tiny/preupload/main":
            files = json.loads(request.content)["files"]
            return httpx2.Response(200, json={"files": [{"path": f["path"], "uploadMode": "regular",
                                                         "shouldIgnore": False} for f in files]})
        if path == "/api/models/org/tiny/commit/main":
            commits.append([json.loads(line) for line in request.content.decode().splitlines()])
            return httpx2.Response(200, json={"commitUrl": f"https://huggingface.co/org/tiny/commit/{COMMIT}",
                                              "commitOid": COMMIT, "success": True})
        return httpx2.Response(404, json={"error": f"unexpected {path}"})

    original = _http._GLOBAL_CLIENT_FACTORY
    _http.set_client_factory(lambda: httpx2.Client(transport=httpx2.MockTransport(answer)))
    try:
        model = _tiny()
        info = model.push_to_hub("org/tiny", token="hf_not_a_real_token", class_names=NAMES)
    finally:
        _http.set_client_factory(original)
    assert info.oid == COMMIT
    assert ("POST", "/api/repos/create") in requests
    (commit,) = commits
    files = {entry["value"]["path"]: base64.b64decode(entry["value"]["content"])
             for entry in commit if entry["key"] == "file"}
    assert sorted(files) == ["README.md", "config.json", "model.safetensors"]
    assert huggingface_hub.ModelCard(files["README.md"].decode()).data.library_name == "ccnet-pytorch"
    assert json.loads(files["config.json"])["model"] == model.config
    pushed = tmp_path / "pushed"
    pushed.mkdir()
    for name in ("config.json", "model.safetensors"):
        (pushed / name).write_bytes(files[name])
    assert torch.equal(CCNet.from_pretrained(pushed).head.cca.gamma, model.head.cca.gamma)
