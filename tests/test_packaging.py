"""The wheel and the sdist as users and packagers get them: metadata, contents, and the tests
running from the unpacked sdist."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

import webhook_guard
from tests.servers import BIN, ROOT

pytestmark = pytest.mark.slow
PACKAGE = Path(webhook_guard.__file__).parent


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist and wheel, built once from the source tree as `python -m build` builds them."""
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out


def only(directory: Path, pattern: str) -> Path:
    (found,) = directory.glob(pattern)
    return found


def test_twine_check_passes_strictly(dist: Path) -> None:
    """The long description renders and the metadata is complete (`twine check --strict`)."""
    result = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *map(str, dist.iterdir())],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_wheel_holds_the_package_and_its_metadata_only(dist: Path) -> None:
    """Every module, py.typed and the dashboard's assets; the licence, readme, URLs and the one
    version; no tests."""
    with zipfile.ZipFile(only(dist, "*.whl")) as wheel:
        names = set(wheel.namelist())
        info = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(wheel.read(info).decode())
        entry_points = wheel.read(info.replace("METADATA", "entry_points.txt")).decode()
    sources = {
        "webhook_guard/" + str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert sources <= names, sorted(sources - names)
    assert "webhook_guard/py.typed" in names
    assert not any(n.startswith("tests/") for n in names)
    assert any(n.endswith("licenses/LICENSE") for n in names)
    assert metadata["Version"] == webhook_guard.__version__
    assert metadata["License-Expression"] == "Apache-2.0"
    assert "Framework :: Django" in metadata.get_all("Classifier")
    assert metadata["Description-Content-Type"] == "text/markdown"
    assert "make demo" in (metadata.get_payload() or "")
    assert any(url.startswith("Changelog,") for url in metadata.get_all("Project-URL"))
    assert "webhook-guard = webhook_guard.cli:main" in entry_points


def test_the_tests_run_from_the_unpacked_sdist(dist: Path, tmp_path: Path) -> None:
    """The sdist carries the suite, the docs and the sample apps, and its core tests pass run
    from the unpacked tree against the package in it."""
    with tarfile.open(only(dist, "*.tar.gz")) as sdist:
        sdist.extractall(tmp_path, filter="data")
    tree = only(tmp_path, "webhook_guard-*")
    for part in ("tests/contract.py", "docs/guarantees.md", "sample_apps/flask_app.py", "LICENSE"):
        assert (tree / part).exists(), part
    imported = subprocess.run(
        [sys.executable, "-c", "import webhook_guard; print(webhook_guard.__file__)"],
        cwd=tree,
        capture_output=True,
        text=True,
    ).stdout
    assert imported.startswith(str(tree)), imported
    result = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider"),
            *("-m", "not e2e and not slow", "tests/core", "tests/test_layers.py"),
        ],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout


def test_version_is_printed_and_exits_zero() -> None:
    """`webhook-guard --version` prints the one version."""
    result = subprocess.run(
        [str(BIN / "webhook-guard"), "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0
    assert result.stdout.strip() == f"webhook-guard {webhook_guard.__version__}"
