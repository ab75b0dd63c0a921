"""The command line: build without Quarto exits 0 with install instructions; publish and status."""
from __future__ import annotations

import json

import pytest

import paper.quarto
from paper.__main__ import main
from paper.runner import Project


@pytest.mark.integration
def test_build_without_quarto_publishes_and_explains(tiny_project: Project, monkeypatch, capsys):
    monkeypatch.setattr(paper.quarto.shutil, "which", lambda name: None)
    assert main(["--root", str(tiny_project.root), "build", "--profile", "default", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "[1/1] tiny (default): executing" in out
    assert "needs Quarto" in out and paper.quarto.INSTALL_URL in out and "$QUARTO" in out
    site = tiny_project.executed_dir / "site"
    assert (site / "tiny.ipynb").is_file()
    assert json.loads((site / "results" / "tiny.json").read_text())["profile"] == "default"

    assert main(["--root", str(tiny_project.root), "build", "--profile", "default", "--no-render"]) == 0
    assert "up to date" in capsys.readouterr().out

    assert main(["--root", str(tiny_project.root), "status", "--profile", "default"]) == 0
    assert "tiny: up to date" in capsys.readouterr().out


def test_publish_fails_clearly_when_nothing_was_executed(tiny_project: Project, capsys):
    assert main(["--root", str(tiny_project.root), "publish", "--profile", "default"]) == 1
    assert "python -m paper build" in capsys.readouterr().err


def test_unknown_profile_is_an_error(tiny_project: Project, capsys):
    assert main(["--root", str(tiny_project.root), "build", "--profile", "nope"]) == 1
    assert "no parameters file for profile 'nope'" in capsys.readouterr().err


def test_quarto_profile_selects_the_parameters_file(tiny_project: Project, monkeypatch):
    from paper.__main__ import active_profile

    (tiny_project.params_dir / "paper.yaml").write_text("tiny: {}\n")
    monkeypatch.setenv("QUARTO_PROFILE", "production,paper")
    assert active_profile(tiny_project, None) == "paper"
    monkeypatch.delenv("QUARTO_PROFILE")
    assert active_profile(tiny_project, None) == "paper" == paper.quarto.SITE_PROFILE
    assert paper.quarto.render_command("paper") == ["quarto", "render", "--profile", "paper"]
    assert paper.quarto.render_command("default") == ["quarto", "render", "--profile", "default"]


def test_build_defaults_to_the_full_size_profile(tiny_project: Project, capsys):
    assert main(["--root", str(tiny_project.root), "build", "--no-render"]) == 1
    assert "no parameters file for profile 'paper'" in capsys.readouterr().err


def test_quarto_is_found_through_the_environment(tmp_path, monkeypatch):
    fake = tmp_path / "my-quarto"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("QUARTO", raising=False)
    assert paper.quarto.quarto_executable() is None
    monkeypatch.setenv("QUARTO", str(fake))
    assert paper.quarto.quarto_executable() == str(fake)
    monkeypatch.setenv("QUARTO", str(tmp_path / "missing"))
    assert paper.quarto.quarto_executable() is None
