"""The README's examples are what the code accepts: its complete sequence file loads
(every key known, every value in range) and its target resolves offline."""

from __future__ import annotations

from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _toml_after(heading: str) -> str:
    text = README.read_text()
    start = text.index("```toml\n", text.index(heading)) + len("```toml\n")
    return text[start:text.index("```", start)]


def test_readme_sequence_file_loads_and_its_target_resolves(tmp_path):
    from napari_astro.capture.objects import lookup
    from napari_astro.capture.sequence import load_sequence

    path = tmp_path / "night.toml"
    path.write_text(_toml_after("### The sequence file"))
    seq = load_sequence(path)
    types = [ln.type for ln in seq.lines]
    assert types == ["light", "dark", "bias", "flat", "darkflat"]
    s = seq.settings
    assert s.guiding == "builtin" and s.meridian_flip and s.min_altitude == 25
    ra, dec = lookup(s.object)
    assert abs(ra - 83.82) < 0.05 and abs(dec + 5.39) < 0.05      # M 42 (SIMBAD)
    # the dark matches the lights' exposure, the dark-flat the flats' first trial
    assert seq.lines[1].exposure == seq.lines[0].exposure
    assert seq.lines[4].exposure == seq.lines[3].exposure
