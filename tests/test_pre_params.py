"""The pre-processing steps defined once: the dataclasses agree with the core's
strategy tables, the CLI options and widget forms are generated from them, and every
step round-trips through HISTORY and a recipe (TOML) table."""

from __future__ import annotations

import argparse
import dataclasses
import tomllib

import numpy as np
import pytest

from napari_astro.cli import build_parser
from napari_astro.core.errors import BadInputError
from napari_astro.pipeline.cliargs import option_names
from napari_astro.pipeline.params import Execution, StepParams, field_info
from napari_astro.pipeline.steps import (CalibrateParams, IntegrateParams, MastersParams,
                                         RegisterParams, StackParams)

PRE = (MastersParams, CalibrateParams, RegisterParams, IntegrateParams, StackParams)

# a value other than the default for every field (they must all survive the round trips)
CHANGED = {
    MastersParams: dict(rejection="sigma", low=2.5, high=4.0, temp_tolerance=3.0,
                        combine="median"),
    CalibrateParams: dict(dark_mode="scale", temp_tolerance=1.0, pedestal=0.01,
                          auto_pedestal=False, cosmetic=False, hot_sigma=6.0, cold_sigma=7.0,
                          debayer=False, debayer_method="bilinear", equalize_cfa=True,
                          bayer="GBRG"),
    RegisterParams: dict(model="similarity", interpolation="bilinear", clamp=False,
                         reference="/data/light_0003.fits", detection_sigma=8.0,
                         max_stars=100, max_fwhm_ratio=2.0, min_stars_ratio=0.5),
    IntegrateParams: dict(combine="median", normalization="additive", weighting="fwhm",
                          rejection="percentile", low=0.3, high=0.2, rejection_maps=True),
    StackParams: dict(skip_bad=True, float16=True, clean=True, rgb="R,G,B"),
}


def _choices(cls, name):
    return next(i.choices for i in field_info(cls) if i.name == name)


def test_literal_choices_equal_the_core_tables():
    from napari_astro.core import integration as integ

    try:  # the strategy tables, wherever the core keeps them
        from napari_astro.core.integration import strategies as tabs
    except ImportError:
        tabs = integ
    from napari_astro.core.debayer import DEBAYER_METHODS
    from napari_astro.core.image import BAYER_PATTERNS
    from napari_astro.core.registration import INTERPOLATIONS, MODELS

    tables = {"rejection": set(tabs._BY_NAME), "normalization": set(tabs._NORM_BY_NAME),
              "weighting": set(tabs._WEIGHT_BY_NAME)}
    for cls in (MastersParams, IntegrateParams):
        assert set(_choices(cls, "rejection")) == tables["rejection"]
    assert set(_choices(IntegrateParams, "normalization")) == tables["normalization"]
    assert set(_choices(IntegrateParams, "weighting")) == tables["weighting"]
    assert set(_choices(RegisterParams, "model")) == set(MODELS)
    assert set(_choices(RegisterParams, "interpolation")) == set(INTERPOLATIONS)
    assert set(_choices(CalibrateParams, "debayer_method")) == set(DEBAYER_METHODS)
    assert set(_choices(CalibrateParams, "bayer")) == set(BAYER_PATTERNS)
    # every combine the dataclasses offer is one the core combines with
    data = np.random.default_rng(0).random((5, 4, 4)).astype(np.float32)
    for c in _choices(IntegrateParams, "combine"):
        if c != "sum":
            assert integ.combine_stack(data, combine=c).shape == (4, 4)


def test_every_field_is_documented_and_execution_is_apart():
    for cls in PRE:
        for info in field_info(cls):
            assert info.help, f"{cls.__name__}.{info.name} has no help"
        names = {f.name for f in dataclasses.fields(cls)}
        assert not names & {f.name for f in dataclasses.fields(Execution)}, cls


@pytest.mark.parametrize("cls", PRE)
def test_round_trip_history_and_toml(cls):
    params = cls(**CHANGED[cls])
    assert params != cls()
    assert cls.from_history(params.history()) == params
    assert StepParams.parse_history(params.history())[0] == cls.STEP_ID
    # a recipe table: id + params (None = auto is simply left out of TOML)
    table = {k: v for k, v in params.to_dict().items() if v is not None}
    text = f'[[step]]\nid = "{cls.STEP_ID}"\n' + "".join(
        f"{k} = {_toml(v)}\n" for k, v in table.items())
    step = tomllib.loads(text)["step"][0]
    assert step.pop("id") == cls.STEP_ID
    assert cls.from_dict(step) == params


def _toml(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v + '"'
    return repr(v)


@pytest.mark.parametrize("cls,field,value", [
    (MastersParams, "rejection", "median"), (IntegrateParams, "weighting", "snr"),
    (RegisterParams, "max_stars", 2), (CalibrateParams, "bayer", "RGBG"),
    (IntegrateParams, "low", 1.5)])
def test_bad_value_names_the_field(cls, field, value):
    kw = {field: value}
    if (cls, field) == (IntegrateParams, "low"):
        kw["rejection"] = "gesd"          # gesd: low is a fraction below 1
    with pytest.raises(BadInputError) as err:
        cls(**kw)
    assert f"{cls.STEP_ID}." in err.value.message


def _subparser(command: str) -> argparse.ArgumentParser:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sub.choices[command]


COMMANDS = {"masters": [(MastersParams, "")],
            "calibrate": [(CalibrateParams, ""), (MastersParams, "masters_")],
            "register": [(RegisterParams, "")],
            "integrate": [(IntegrateParams, "")],
            "stack": [(StackParams, ""), (MastersParams, "masters_"), (CalibrateParams, ""),
                      (RegisterParams, ""), (IntegrateParams, "")]}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_cli_options_are_generated_from_the_dataclasses(command):
    p = _subparser(command)
    by_opt = {o: a for a in p._actions for o in a.option_strings}
    for cls, prefix in COMMANDS[command]:
        infos = {i.name: i for i in field_info(cls)}
        for name, opt in option_names(cls, prefix=prefix).items():
            action = by_opt[opt]
            info = infos[name]
            assert action.default is None          # the dataclass supplies the default
            assert action.help == info.describe().replace("%", "%%")  # with unit, range and default
            if info.choices is not None and info.base is not bool:
                assert tuple(action.choices) == tuple(c for c in info.choices if c is not None)
    # CLI.md's option names
    for opt in {"integrate": ["--rejection", "--low", "--high", "--weighting",
                              "--normalization", "--rejection-maps", "--memory-limit",
                              "--scheduler"],
                "stack": ["--reference", "--work-dir", "--scheduler", "--no-debayer", "--bayer",
                          "--masters-rejection", "--interpolation", "--workers"],
                "calibrate": ["--no-debayer"], "register": ["--reference"]}.get(command, []):
        assert opt in by_opt, opt


def test_cli_values_reach_the_dataclasses():
    from napari_astro.pipeline.stack import _params_from_args

    args = build_parser().parse_args(
        ["stack", "s", "-o", "o.fits", "--masters-rejection", "sigma", "--rejection", "gesd",
         "--low", "0.2", "--interpolation", "bilinear", "--no-debayer", "--bayer", "BGGR",
         "--workers", "1", "--memory-limit", "1GB", "--clean"])
    stack, masters, cal, reg, integ, execution = _params_from_args(args)
    assert masters == MastersParams(rejection="sigma")
    assert cal == CalibrateParams(debayer=False, bayer="BGGR")
    assert reg == RegisterParams(interpolation="bilinear")
    assert integ == IntegrateParams(rejection="gesd", low=0.2)
    assert stack == StackParams(clean=True)
    assert execution == Execution(workers=1, memory_limit="1GB")


def test_widget_forms_are_generated_from_the_dataclasses(qtbot):
    from napari_astro.widgets._base import ParamsForm

    for cls in PRE:
        form = ParamsForm(cls)
        assert form.value() == cls()
        for info in field_info(cls):
            w = form[info.name]
            if info.choices is not None and info.base is not bool:
                # a choice box offering exactly the Literal's values (None = auto)
                assert getattr(w, "kind", "choice") == "choice", info.name
                got = {v for v in w.choices if v is not None}
                assert got == {c for c in info.choices if c is not None}
            # tooltips say help, unit, range and default; spin boxes take the range
            if hasattr(w, "tooltip"):
                assert w.tooltip == info.describe(), info.name
            if getattr(w, "kind", None) in ("int", "float") and info.min is not None:
                assert (w.min, w.max) == (info.min, info.max), info.name
        form.set_value(cls(**CHANGED[cls]))
        assert form.value() == cls(**CHANGED[cls])


@pytest.fixture(scope="module")
def mono_lights(tmp_path_factory):
    from napari_astro.core.simulate import NightParams, simulate_night

    return simulate_night(tmp_path_factory.mktemp("mono") / "n", NightParams(
        width=320, height=240, n_lights=3, n_darks=0, n_flats=0, n_biases=0, mono=True, seed=2))


def test_integration_and_registration_history_read_back(mono_lights, tmp_path):
    from napari_astro.core.io import read_image
    from napari_astro.pipeline.integrate import integrate_with_params
    from napari_astro.pipeline.register import register_frames

    truth = mono_lights
    rp = RegisterParams(interpolation="bicubic", max_stars=120)
    reg = register_frames(truth.lights, tmp_path / "r", rp)
    frames = [p for p in reg.outputs if p is not None]
    line = [h for h in read_image(frames[1]).history if h.startswith("pre.register ")][-1]
    assert RegisterParams.from_history(line) == rp
    ip = IntegrateParams(rejection="sigma", low=2.5, weighting="none")
    res = integrate_with_params(frames, ip)
    lines = [h for h in res.image.history if h.startswith("pre.integrate ")]
    assert IntegrateParams.from_history(lines[-1]) == ip
    assert RegisterParams.from_history(
        [h for h in res.image.history if h.startswith("pre.register ")][-1]) == rp
    assert res.image.header["NCOMBINE"] == len(frames)
    # `napari-astro integrate` writes the same line, and the coverage map beside OUT
    from napari_astro.cli import main

    out = tmp_path / "i.fits"
    assert main(["integrate", *map(str, frames), "-o", str(out), "--rejection", "sigma",
                 "--low", "2.5", "--weighting", "none"]) == 0
    img = read_image(out)
    assert IntegrateParams.from_history(
        [h for h in img.history if h.startswith("pre.integrate ")][-1]) == ip
    assert img.header["COVERAGE"] == "i_coverage.fits" and img.header["NCOMBINE"] == 3
    cov = read_image(tmp_path / "i_coverage.fits").data
    np.testing.assert_array_equal(cov, res.coverage)
    assert cov.max() == 3 and cov.min() < 3


def test_stack_widget_workers_take_effect_and_coverage_reaches_the_layer(
        make_napari_viewer, mono_lights, tmp_path):
    """The Execution form's workers are the threads of the run (numba's count in the
    thread that runs it); the stack layer carries the coverage map in its metadata."""
    import numba

    from napari_astro.widgets.stack import StackWidget

    viewer = make_napari_viewer()
    widget = StackWidget(viewer)
    widget.inputs.set_paths([str(mono_lights.lights[0].parent)])
    widget.output.set_path(tmp_path / "s.fits")
    widget.forms["execution"]["workers"].value = 1
    widget.forms["register"]["reference"].value = str(mono_lights.lights[0])
    assert widget.step_params()["execution"] == Execution(workers=1)
    job = widget.prepare()
    seen = []
    before = numba.get_num_threads()
    result = job(progress=lambda done, total, msg="": seen.append(numba.get_num_threads()))
    assert seen and set(seen) == {1}
    assert numba.get_num_threads() == before          # restored after the run
    widget.show_result(result)
    cov = viewer.layers["stack"].metadata["coverage"]
    assert cov.shape == (240, 320) and cov.max() == 3
    np.testing.assert_array_equal(cov, read_cov(tmp_path / "s_coverage.fits"))


def read_cov(path):
    from napari_astro.core.io import read_image

    return read_image(path).data


def test_integration_widget_puts_the_coverage_in_the_layer(make_napari_viewer, mono_lights):
    from napari_astro.pipeline.integrate import integrate_with_params
    from napari_astro.pipeline.register import register_frames
    from napari_astro.widgets.integration import IntegrationWidget

    reg = register_frames(mono_lights.lights, None, RegisterParams())
    frames = [im for im in reg.images if im is not None]
    result = integrate_with_params(frames, IntegrateParams(rejection="none"))
    # in-memory frames: the coverage comes from their masks
    expect = sum(im.mask.astype(np.float32) for im in frames)
    np.testing.assert_array_equal(result.coverage, expect)
    viewer = make_napari_viewer()
    widget = IntegrationWidget(viewer)
    widget.show_result(result)
    np.testing.assert_array_equal(viewer.layers["integration"].metadata["coverage"], expect)
