"""Drive Siril 1.0.6 (``siril-cli``) on a session folder with its standard scripts.

A session folder holds ``bias/ darks/ flats/ lights/`` (FITS); any calibration folder
may be missing (e.g. the lights-only Seestar sessions). Siril works in a separate work
folder that mirrors the session with symbolic links, so the session is never touched:

    WORK/bias/*  WORK/darks/*  WORK/flats/*  WORK/lights/*   -> links to the session
    WORK/process/                                             Siril's sequences
    WORK/result.fit                                           the stack

The script is Siril's own ``OSC_Preprocessing.ssf`` (shipped in
/usr/share/siril/scripts) with the rejection named explicitly, split into stages so
that each stage can be timed on its own (one ``siril-cli`` start per stage, about
0.1 s of start-up each):

- ``masters``:   convert + ``stack bias rej w 3 3 -nonorm``, darks likewise,
                 ``preprocess flat -bias=bias_stacked`` + ``stack pp_flat rej w 3 3 -norm=mul``
- ``calibrate``: convert lights + ``preprocess light -dark=dark_stacked
                 -flat=pp_flat_stacked -cfa -equalize_cfa -debayer``
- ``register``:  ``setref pp_light 1`` + ``register pp_light`` (global star alignment,
                 homography by default; see stage_lines for why setref)
- ``integrate``: ``stack r_pp_light rej w 3 3 -norm=addscale -output_norm -out=../result``
- ``all``:       the four in one script and one ``siril-cli`` start (the whole run).

Settings are pinned: every script starts with ``setcpu`` (2 threads by default, all
the cores this machine has), ``set32bits`` and ``setcompress 0``, and Siril reads the
init file ``siril.config`` written into the work folder (Siril 1.0.6's defaults: RCD
debayering, Bayer pattern from the header, ``roworder_top_down = true``, stacking
memory ratio 0.9 of free memory), so a user's own ~/.config/siril does not change the
figures.

Usage::

    python benchmarks/siril.py SESSION WORK [--stages masters,calibrate,register,integrate|all]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import Measurement, measure  # noqa: E402

SIRIL = os.environ.get("SIRIL_CLI", "siril-cli")
FITS_EXT = (".fit", ".fits", ".fts", ".FIT", ".FITS", ".FTS")
# Siril folder name -> accepted session folder names (first found wins)
FOLDERS = {
    "bias": ("bias", "biases", "offsets", "offset"),
    "darks": ("darks", "dark"),
    "flats": ("flats", "flat"),
    "lights": ("lights", "light"),
}
STAGES = ("masters", "calibrate", "register", "integrate")

# Siril 1.0.6's own defaults (as written by a first start), pinned here so that a
# user's configuration cannot change the benchmark. Only the sections that matter
# to preprocessing are kept; Siril fills the rest with its defaults.
SIRIL_CONFIG = """\
libraw-settings : { mul_0 = 1.0; mul_2 = 1.0; bright = 1.0; auto = 1; cam_wb = 0;
  auto_wb = 0; user_qual = 2; gamm_0 = 1.0; gamm_1 = 1.0; user_black = 0; };
debayer-settings : { use_bayer_header = true; bayer_pattern = 0;
  roworder_top_down = true; debayer_algo = 8; x_bayer_offset = 0; y_bayer_offset = 0; };
prepro-settings : { cfa = false; equalize_cfa = true; fix_xtrans = false;
  xtrans_af = ( 0, 0, 0, 0 ); xtrans_sample = ( 0, 0, 0, 0 ); bias_lib = "";
  use_bias_lib = false; bias_synth = ""; use_bias_synth = false; dark_lib = "";
  use_dark_lib = false; flat_lib = ""; use_flat_lib = false; };
registration-settings : { method = 0; };
stacking-settings : { method = 0; rejection = 5; sigma_low = 3.0; sigma_high = 3.0;
  linear_low = 5.0; linear_high = 5.0; percentile_low = 3.0; percentile_high = 3.0;
  mem_mode = 0; maxmem = 0.9; maxmem_gb = 10.0; };
compression-settings : { compress_enabled = false; compress_method = 0;
  compress_quantization = 16.0; compress_hcompress_scale = 4.0; };
misc-settings : { swap_directory = "/tmp"; extension = ".fit"; FITS_type = 1;
  scripts_warning = false; check_requires = true; check_update_at_startup = false; };
"""


def siril_version() -> str:
    """``siril-cli --version`` output, e.g. ``'siril 1.0.6'`` (empty if not installed)."""
    try:
        out = subprocess.run([SIRIL, "--version"], capture_output=True, text=True,
                             timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (out.stdout or out.stderr).strip().splitlines()[-1] if (out.stdout or out.stderr) else ""


def _find_folder(session: Path, names: Sequence[str]) -> Path | None:
    for n in names:
        p = session / n
        if p.is_dir() and any(f.suffix in FITS_EXT for f in p.iterdir()):
            return p
    return None


def prepare_workdir(session: str | os.PathLike, work: str | os.PathLike, *,
                    clean: bool = True) -> dict[str, int]:
    """Mirror ``session`` into ``work`` with one symbolic link per FITS file.

    Real folders of links (not a link to the folder) so that Siril's ``cd lights``
    followed by ``../process`` stays inside ``work``.

    Returns
    -------
    dict
        Number of files per Siril folder name (0 when absent).
    """
    session, work = Path(session).resolve(), Path(work)
    if clean and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    counts = {}
    for name, alts in FOLDERS.items():
        src = _find_folder(session, alts)
        if src is None and name == "lights" and _find_folder(session.parent, (session.name,)):
            src = session  # a folder of lights only, e.g. ../shared/data/seestar_m94/session1
        files = sorted(f for f in src.iterdir() if f.suffix in FITS_EXT) if src else []
        counts[name] = len(files)
        if files:
            (work / name).mkdir(exist_ok=True)
            for i, f in enumerate(files):
                # Siril's `convert` numbers files in name order; keep that order and
                # drop spaces from names (the Seestar's file names have them).
                link = work / name / f"{i:05d}_{f.name.replace(' ', '_')}"
                if not link.exists():
                    link.symlink_to(f)
    if counts["lights"] == 0:
        raise SystemExit(f"{session}: no lights/ folder with FITS files")
    (work / "siril.config").write_text(SIRIL_CONFIG)
    return counts


def stage_lines(stage: str, have: dict[str, int]) -> list[str]:
    """Siril script lines of one stage, given which calibration folders exist."""
    if stage == "masters":
        lines = []
        if have.get("bias"):
            lines += ["cd bias", "convert bias -out=../process", "cd ../process",
                      "stack bias rej w 3 3 -nonorm", "cd .."]
        if have.get("darks"):
            lines += ["cd darks", "convert dark -out=../process", "cd ../process",
                      "stack dark rej w 3 3 -nonorm", "cd .."]
        if have.get("flats"):
            lines += ["cd flats", "convert flat -out=../process", "cd ../process"]
            if have.get("bias"):
                lines += ["preprocess flat -bias=bias_stacked",
                          "stack pp_flat rej w 3 3 -norm=mul", "cd .."]
            else:  # same master name without a bias to subtract
                lines += ["stack flat rej w 3 3 -norm=mul -out=pp_flat_stacked", "cd .."]
        return lines
    if stage == "calibrate":
        opts = []
        if have.get("darks"):
            opts.append("-dark=dark_stacked")
        elif have.get("bias"):
            opts.append("-bias=bias_stacked")
        if have.get("flats"):
            opts.append("-flat=pp_flat_stacked")
        return ["cd lights", "convert light -out=../process", "cd ../process",
                "preprocess light " + " ".join(opts + ["-cfa", "-equalize_cfa", "-debayer"]),
                "cd .."]
    if stage == "register":
        # Pin the reference to the first light. A fresh sequence has it anyway, but
        # after one registration Siril 1.0.6 stores its "best" frame as the
        # sequence's reference, and a second `register` in the same folder then
        # aligns everything onto that frame instead (another output grid).
        return ["cd process", "setref pp_light 1", "register pp_light", "cd .."]
    if stage == "integrate":
        return ["cd process",
                "stack r_pp_light rej w 3 3 -norm=addscale -output_norm -out=../result",
                "cd .."]
    raise ValueError(f"unknown Siril stage {stage!r}")


def script(stages: Sequence[str], have: dict[str, int], *, threads: int = 2) -> str:
    """A complete Siril script running ``stages`` in order."""
    lines = ["requires 1.0.0", f"setcpu {threads}", "set32bits", "setcompress 0"]
    for s in stages:
        lines += stage_lines(s, have)
    lines.append("close")
    return "\n".join(lines) + "\n"


def parse_log(text: str) -> dict:
    """Figures Siril prints: frames registered/stacked, noise, execution times."""
    info: dict = {}
    m = re.findall(r"Total: (\d+) failed, (\d+) registered", text)
    if m:
        info["register_failed"], info["registered"] = map(int, m[-1])
    m = re.findall(r"(\d+) images have been stacked", text)
    if m:
        info["stacked"] = [int(x) for x in m]
    m = re.findall(r"Background noise value \(channel: #(\d)\): [\d.]+ \(([\d.e+-]+)\)", text)
    if m:
        info["noise"] = {int(c): float(v) for c, v in m[-3:]}
    m = re.findall(r"Found (\d+) stars in reference", text)
    if m:
        info["ref_stars"] = int(m[-1])
    if "Script execution failed" in text:
        err = re.findall(r"log: (Error.*|.*failed.*)", text)
        info["error"] = err[-3:] if err else ["Script execution failed"]
    return info


def run_stages(work: str | os.PathLike, stages: Sequence[str], have: dict[str, int], *,
               name: str | None = None, threads: int = 2,
               timeout: float | None = 3600) -> Measurement:
    """Run ``stages`` as one Siril script in ``work`` and measure it.

    The script and Siril's log are kept in ``work`` as ``NAME.ssf`` / ``NAME.log``.
    A script that Siril reports as failed gives returncode 1 even if Siril exits 0.
    """
    work = Path(work).resolve()
    name = name or "-".join(stages)
    ssf = work / f"{name}.ssf"
    ssf.write_text(script(stages, have, threads=threads))
    log = work / f"{name}.log"
    m = measure([SIRIL, "-i", str(work / "siril.config"), "-s", str(ssf), "-d", str(work)],
                cwd=work, log=log, timeout=timeout)
    text = log.read_text(errors="replace")
    m.extra.update(parse_log(text))
    m.extra["tool"] = "siril"
    m.extra["stages"] = list(stages)
    if m.returncode == 0 and "error" in m.extra:
        m.returncode = 1
    return m


def result_path(work: str | os.PathLike) -> Path:
    """Siril's stack of ``work`` (``result.fit``)."""
    return Path(work) / "result.fit"


def frames(work: str | os.PathLike, prefix: str) -> list[Path]:
    """Siril's frames of one sequence in ``work/process``, e.g. ``prefix='pp_light_'``."""
    return sorted((Path(work) / "process").glob(f"{prefix}[0-9]*.fit"))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Run Siril's standard OSC script on SESSION.")
    ap.add_argument("session")
    ap.add_argument("work")
    ap.add_argument("--stages", default="all",
                    help="'all' (one script) or a comma list of " + ",".join(STAGES))
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    have = prepare_workdir(a.session, a.work)
    groups = [list(STAGES)] if a.stages == "all" else [[s] for s in a.stages.split(",")]
    rc = 0
    for g in groups:
        m = run_stages(a.work, g, have, name="all" if a.stages == "all" else None,
                       threads=a.threads)
        print(json.dumps({"stages": g, "returncode": m.returncode, "wall_s": round(m.wall_s, 2),
                          "cpu_s": round(m.cpu_s, 2),
                          "peak_rss_MB": round(m.peak_rss_bytes / 2**20, 1), **m.extra}))
        rc = rc or m.returncode
    return rc


if __name__ == "__main__":
    sys.exit(main())
