"""`rpo tables` rewrites only the marked results block of the README, from the tables it just wrote."""

from rpo.report import README_END, README_START, update_readme


def test_update_readme_replaces_only_the_block(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    (results / "t.md").write_text("**T**\n\n| a |\n|---|\n| 0.5 ± 0.1 |\n")
    (results / "t.png").write_bytes(b"png")
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{README_START}\nstale 0.9\n{README_END}\noutro\n")
    manifest = {
        "profile": "toy",
        "grid": "full",
        "tables_git_commit": "abc",
        "tables": {"t": {"files": {"md": "t.md", "png": "t.png"}}},
    }
    assert update_readme(readme, manifest, results)
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n")
    assert "stale" not in text and "| 0.5 ± 0.1 |" in text and "](results/t.png)" in text
    assert update_readme(readme, manifest, results) and readme.read_text() == text  # idempotent
    readme.write_text("no markers\n")
    assert not update_readme(readme, manifest, results)
