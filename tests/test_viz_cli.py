"""``factorlens traverse / walk / report`` on a faked run (the spy model of test_viz)."""

from __future__ import annotations

import json

from PIL import Image
from test_report import fake_run

import factorlens.training
from factorlens.cli.main import main


def test_traverse_walk_report_commands(tmp_path, monkeypatch, capsys):
    run = fake_run(tmp_path / "run")
    other = fake_run(tmp_path / "other")
    runs = {str(run.path): run, str(other.path): other}
    monkeypatch.setattr(factorlens.training, "load_run", lambda p: runs[str(p)])

    code = main(
        [
            "traverse",
            str(run.path),
            "--ids",
            "img3",
            "5",
            "--steps",
            "4",
            "--span",
            "2",
            "--inactive",
            "hide",
            "--max-dims",
            "2",
            "--compare",
            str(other.path),
        ]
    )
    assert code == 0
    figures = run.path / "figures"
    grid = Image.open(figures / "traversal.png")
    gif = Image.open(figures / "traversal.gif")
    assert gif.n_frames == 4
    assert Image.open(figures / "traversal_compare.png").width > 2 * grid.width
    captions = json.loads((figures / "figures.json").read_text())["figures"]
    assert "images (img3, img5)" in captions["traversal.png"] and "[-2, 2]" in captions["traversal.png"]
    assert "only the 2 dimensions with the most KL are shown" in captions["traversal.png"]
    assert grid.height == 6 + 28 + 26 + 4 * 128 + 3 * 2 + 6  # 2 images x 2 dimensions

    out = tmp_path / "walk-out"
    assert (
        main(
            [
                "walk",
                str(run.path),
                "--source",
                "img1",
                "--target",
                "11",
                "--dims",
                "3",
                "1",
                "--frames",
                "3",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    caption = json.loads((out / "figures.json").read_text())["figures"]["walk.png"]
    assert "from image img1 to image img11" in caption and "z3, z1" in caption
    assert Image.open(out / "walk.gif").n_frames == 3 + 2

    capsys.readouterr()
    assert main(["walk", str(run.path), "--source", "nope", "--target", "1"]) == 2
    assert "error: image 'nope' is neither an id" in capsys.readouterr().err

    assert main(["viz", str(other.path), "--images", "1", "--steps", "3"]) == 0
    listed = capsys.readouterr().out.split()
    manifest = json.loads((other.path / "figures" / "figures.json").read_text())["figures"]
    assert listed == [str(other.path / "figures" / name) for name in manifest]
    assert {"traversal.png", "walk.png", "kl_per_dim.png", "reconstructions.png"} <= set(manifest)

    report = tmp_path / "report.html"
    assert main(["report", str(run.path), "--images", "1", "--steps", "3", "--out", str(report)]) == 0
    assert report.stat().st_size > 0 and "factorlens report" in report.read_text()
    assert Image.open(figures / "traversal.gif").n_frames == 3  # the report redrew it with 3 steps
    # The report lists only what it redrew: the earlier `traverse --compare` figure is not carried over.
    redrawn = json.loads((figures / "figures.json").read_text())["figures"]
    assert "traversal_compare.png" not in redrawn and "traversal_compare" not in report.read_text()


def test_cli_report_defaults_match_the_library_defaults():
    # cli/viz.py repeats the defaults so that `factorlens --help` does not import torch-heavy modules
    from factorlens.cli import viz as cli_viz
    from factorlens.viz import run_figures

    assert cli_viz.REPORT_IMAGES == run_figures.REPORT_IMAGES == 2
    assert cli_viz.REPORT_TRAVERSAL_DIMS == run_figures.REPORT_TRAVERSAL_DIMS == 6
