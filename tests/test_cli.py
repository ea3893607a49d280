"""The command-line skeleton of CLI.md: every subcommand is registered; the ones not
built yet say so and exit 2; bad usage exits 2 with one line."""

import subprocess
import sys
from pathlib import Path

import pytest

from napari_astro import cli
from napari_astro.cli import HANDLERS, build_parser, main
from napari_astro.core.errors import NotBuiltError

CLI_MD = ["demo", "simulate", "masters", "calibrate", "register", "integrate", "stack", "crop",
          "background", "color", "denoise", "stretch", "curves", "export", "process", "capture"]


def test_every_subcommand_of_cli_md_is_registered():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(CLI_MD) <= set(sub.choices) and set(CLI_MD) <= set(HANDLERS)


@pytest.mark.parametrize("argv", [["crop", "a.fits", "b.fits", "--auto"],
                                  ["stretch", "a.fits", "b.fits"],
                                  ["process", "a.fits", "-o", "out"],
                                  ["capture", "seq.toml", "-o", "out"]])
def test_unbuilt_subcommands_say_so(argv, capsys, tmp_path):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    if sub.choices[argv[0]].get_default("_step_command"):
        pytest.skip(f"{argv[0]} is built now (from the step registry)")
    try:
        cli._resolve(argv[0])
        pytest.skip(f"{argv[0]} has a handler now")
    except NotBuiltError:
        pass
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not built yet" in err[0] and argv[0] in err[0]


def test_bad_usage_is_exit_2_one_line():
    exe = Path(sys.executable).with_name("napari-astro")
    out = subprocess.run([str(exe), "integrate", "a.fits"], capture_output=True, text=True)
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1 and "-o" in out.stderr


def test_missing_input_names_the_file(tmp_path, capsys):
    missing = tmp_path / "nope.fits"
    assert main(["integrate", str(missing), str(missing), "-o", str(tmp_path / "o.fits")]) == 2
    assert "nope.fits" in capsys.readouterr().err
    assert not (tmp_path / "o.fits").exists()


@pytest.mark.parametrize("argv", [
    ["stack", "night", "-o", "out.fits", "--reference", "a.fits", "--workers", "2", "-q"],
    ["integrate", "a.fits", "b.fits", "-o", "o.fits", "--rejection", "sigma"],
    ["calibrate", "s", "-o", "d", "--masters-combine", "median"],
    ["register", "a.fits", "-o", "d"], ["masters", "s", "-o", "d"],
    ["demo", "--lights", "3"], ["live", "d", "--once"]])
def test_one_command_parser_parses_as_the_whole_parser(argv):
    """main() builds only the parser of the command given (not the step registry's):
    the same options, defaults and values as with every parser."""
    whole = build_parser().parse_known_args(argv)
    assert cli._command_of(argv) == argv[0]
    assert build_parser(only=argv[0]).parse_known_args(argv) == whole
    assert cli._command_of(["--help"]) is None and cli._command_of(["crop", "a", "b"]) is None


def test_command_line_exits_without_teardown_after_its_work(tmp_path):
    """``napari-astro`` (main without argv) ends with os._exit after the atexit
    handlers and a flush: the output, atexit work and the exit status are all there."""
    code = ("import atexit, sys\n"
            "atexit.register(lambda: print('atexit ran', flush=True))\n"
            "from napari_astro.cli import main\n"
            "sys.argv = ['napari-astro', '--version']\n"
            "main()\n"
            "print('not reached')\n")
    import napari_astro

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [napari_astro.__version__, "atexit", "ran"]
    exe = Path(sys.executable).with_name("napari-astro")
    bad = subprocess.run([str(exe), "stack", str(tmp_path / "none"), "-o",
                          str(tmp_path / "o.fits")], capture_output=True, text=True)
    assert bad.returncode == 2 and "none" in bad.stderr
