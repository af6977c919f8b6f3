"""``make device-wheels``: the closure of the wheels' requirements is checked, as code, against
the folder, what the GPU machine has and the standard library (no network here: made-up wheels)."""

import zipfile

import device_wheels as dw
import pytest

TARGET = dw.MARKER_ENVIRONMENT
GPU = dict.fromkeys(dw.GPU_MACHINE_HAS)


def test_roots_are_ccnet_dependencies_and_test_tools_the_gpu_machine_lacks():
    roots = dw.roots()
    names = {dw.normalize(dw.requirement(r).name) for r in roots}
    # typing-extensions: on the machine, but in a version nobody checked (pydantic needs >= 4.14)
    assert {"albumentations", "cityscapesscripts", "typing-extensions"} <= names
    # what the machine's image has is not shipped again (its pytest and plugins, scipy, ...)
    assert not names & {"torch", "numpy", "pyyaml", "tqdm", "tensorboard", "safetensors", "opencv-python-headless",
                        "pytest", "hypothesis", "scipy", "pillow", "matplotlib"}
    assert "typing-extensions" not in dw.GPU_MACHINE_HAS and "pytest-xdist" in dw.GPU_MACHINE_HAS


def test_markers_extras_and_the_standard_library(tmp_path, make_wheel):
    make_wheel(tmp_path, "alpha", "1.0", requires=[
        "beta==2.0", "numpy>=1.24", "typing",  # typing: the old backport, the standard library on 3.12
        "winonly; sys_platform == 'win32'", "oldpy; python_version < '3.10'", "guiextra; extra == 'gui'",
        "newpy; python_version >= '3.12'"])
    make_wheel(tmp_path, "beta", "2.0")
    make_wheel(tmp_path, "newpy", "0.1")
    assert dw.problems(tmp_path, GPU, TARGET) == []
    assert dw.missing_requirements(tmp_path, GPU, TARGET) == []
    assert {r.name for r in dw.requirements(tmp_path / "alpha-1.0-py3-none-any.whl", TARGET)} == {
        "beta", "numpy", "typing", "newpy"}


def test_unmet_requirements_are_named(tmp_path, make_wheel):
    make_wheel(tmp_path, "alpha", "1.0", requires=["beta==2.0", "gamma>=3", "numpy>=1.24"])
    make_wheel(tmp_path, "beta", "1.9")
    found = dw.problems(tmp_path, {"numpy": "1.21.0"}, TARGET)
    assert found == ["alpha requires beta==2.0, but beta-1.9-py3-none-any.whl has beta 1.9",
                     f"alpha requires gamma>=3: not in {tmp_path} and not installed",
                     "alpha requires numpy>=1.24, but the interpreter has numpy 1.21.0"]
    assert dw.missing_requirements(tmp_path, {"numpy"}, TARGET) == ["gamma>=3"]


def test_one_opencv_stands_in_for_another_and_modules_without_metadata(tmp_path, make_wheel):
    make_wheel(tmp_path, "alpha", "1.0", requires=["opencv-python-headless>=4.9", "PyYAML"])
    assert dw.problems(tmp_path, {"opencv-python": "4.10.0"}, TARGET, importable=lambda name: name == "pyyaml") == []
    assert dw.problems(tmp_path, {"opencv-python": "4.8.0", "pyyaml": "6.0"}, TARGET) == [
        "alpha requires opencv-python-headless>=4.9, but the interpreter has opencv-python-headless 4.8.0"]
    assert dw.importable("pyyaml") and not dw.importable("no-such-distribution-here")


def test_wheel_names_metadata_and_top_level(tmp_path, make_wheel):
    path = make_wheel(tmp_path, "Some_Pkg", "0.3", modules={"some_pkg/__init__.py": "", "helper.py": ""})
    assert dw.folder_wheels(tmp_path) == {"some-pkg": ("0.3", path)}
    assert dw.wheel_top_level(path) == {"some_pkg", "helper"}
    zipfile.ZipFile(tmp_path / "broken.whl", "w").close()  # a zip without METADATA
    with pytest.raises(ValueError, match=r"broken\.whl: not a wheel"):
        dw.folder_wheels(tmp_path)


def test_two_versions_of_one_distribution_are_refused(tmp_path, make_wheel):
    make_wheel(tmp_path, "alpha", "1.0")
    make_wheel(tmp_path, "alpha", "1.1")
    with pytest.raises(ValueError, match="two wheels of alpha"):
        dw.folder_wheels(tmp_path)
