"""The model of a simulated night: its fixed parts (sensor, optics, sky, per-light
geometry) built once from :class:`NightParams`, and the rendering of each frame."""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from .params import _FULL, NightParams, cfa_channel_map
from .render import _expose, _render_line, _render_smooth, _render_stars


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, *key])))


def _frame_seed(seed: int, kind: int, index: int) -> np.uint64:
    return np.uint64(np.random.SeedSequence([seed, 7, kind, index]).generate_state(1, np.uint64)[0])


def _moffat_alpha(fwhm: float, beta: float) -> float:
    return fwhm / (2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0))


def _rotation_matrix(dx: float, dy: float, theta_deg: float, cx: float, cy: float) -> np.ndarray:
    """Rotation by theta about (cx, cy) followed by a shift (dx, dy)."""
    t = math.radians(theta_deg)
    c, s = math.cos(t), math.sin(t)
    return np.array([[c, -s, cx - c * cx + s * cy + dx],
                     [s, c, cy - s * cx - c * cy + dy],
                     [0.0, 0.0, 1.0]])


_KIND = {"bias": 0, "dark": 1, "flat": 2, "light": 3, "darkflat": 4}


class NightModel:
    """The fixed parts of a night (sensor, optics, sky) and per-frame rendering.

    Built once from :class:`NightParams`; :func:`simulate_night` writes its frames and
    the sample data use it in memory. All arrays are float32 ``(H, W)``.
    """

    def __init__(self, params: NightParams) -> None:
        p = self.p = params
        H, W = p.height, p.width
        self.shape = (H, W)
        self.pattern = None if p.mono else p.bayer.upper()
        self.chan = cfa_channel_map(self.pattern)
        self.nch = 1 if p.mono else 3
        self._make_sensor()
        self._make_optics()
        self._make_sky()
        self._make_lights()

    # -- sensor --------------------------------------------------------------------
    def _make_sensor(self) -> None:
        p, (H, W) = self.p, self.shape
        rng = _rng(p.seed, 1)
        bias = rng.standard_normal((H, W), dtype=np.float32) * np.float32(p.bias_pixel_sigma)
        bias += (rng.standard_normal(W, dtype=np.float32) * np.float32(p.bias_column_sigma))[None, :]
        bias += np.float32(p.bias_level)
        self.bias = bias
        # thermal map: log-normal with unit mean
        s = p.dark_nonuniformity
        dark = np.exp(rng.standard_normal((H, W), dtype=np.float32) * np.float32(s)
                      - np.float32(0.5 * s * s)).astype(np.float32)
        dark *= np.float32(p.dark_current)
        n_hot = max(int(round(p.hot_pixel_fraction * H * W)), 3 if p.hot_pixel_fraction > 0 else 0)
        idx = rng.choice(H * W, size=n_hot + max(int(round(p.dead_pixel_fraction * H * W)),
                                                   2 if p.dead_pixel_fraction > 0 else 0),
                         replace=False)
        hot_idx, dead_idx = idx[:n_hot], idx[n_hot:]
        # hot pixel rates: log-uniform 20x..300x the mean current, the very hot ones
        # saturate a light (>= full well in the exposure)
        sat_rate = (_FULL - p.bias_level) * p.gain / p.exposure
        rates = p.dark_current * np.exp(rng.uniform(math.log(20), math.log(300), n_hot))
        very = rng.random(n_hot) < p.very_hot_fraction
        if n_hot and not very.any():
            very[0] = True
        rates[very] = sat_rate * rng.uniform(1.2, 4.0, int(very.sum()))
        order = np.argsort(hot_idx)
        hot_idx, rates = hot_idx[order], rates[order]
        dark.ravel()[hot_idx] = rates.astype(np.float32)
        self.dark = dark
        self.hot_rc = np.stack(np.unravel_index(hot_idx, (H, W)), axis=1).astype(np.int64)
        self.hot_rates = rates.astype(np.float64)
        dead_idx = np.sort(dead_idx)
        self.dead_rc = np.stack(np.unravel_index(dead_idx, (H, W)), axis=1).astype(np.int64)
        self.dead_v = np.round(p.bias_level * rng.uniform(0.1, 0.5, len(dead_idx))).astype(np.int64)

    # -- optics: S = vignetting * dust * PRNU -----------------------------------------
    def vignetting_field(self) -> np.ndarray:
        """Smooth radial falloff: 1 at the optical axis, ``1 - vignetting`` at the
        farthest corner; ``1 - v * (0.4 rho^2 + 0.6 rho^4)``, rho = r / r_corner."""
        p, (H, W) = self.p, self.shape
        cx, cy = self.vig_center
        y, x = np.mgrid[0:H, 0:W].astype(np.float32)
        rho2 = ((x - cx) ** 2 + (y - cy) ** 2) / np.float32(self.vig_radius ** 2)
        return (1.0 - p.vignetting * (0.4 * rho2 + 0.6 * rho2 * rho2)).astype(np.float32)

    def dust_field(self) -> np.ndarray:
        """Product of the dust-mote donuts (1 outside them)."""
        H, W = self.shape
        out = np.ones((H, W), np.float32)
        for m in self.dust:
            r = m["radius"]
            x0, x1 = max(0, int(m["x"] - r - 8)), min(W, int(m["x"] + r + 9))
            y0, y1 = max(0, int(m["y"] - r - 8)), min(H, int(m["y"] + r + 9))
            yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
            rr = np.hypot(xx - m["x"], yy - m["y"])
            e = m["softness"]
            ring = 1.0 / (1.0 + np.exp(-(r - rr) / e)) - 1.0 / (1.0 + np.exp(-(m["inner"] - rr) / e))
            out[y0:y1, x0:x1] *= (1.0 - m["depth"] * ring).astype(np.float32)
        return out

    def _make_optics(self) -> None:
        p, (H, W) = self.p, self.shape
        rng = _rng(p.seed, 2)
        cx = (W - 1) / 2.0 + p.vignetting_center[0] * W
        cy = (H - 1) / 2.0 + p.vignetting_center[1] * H
        self.vig_center = (cx, cy)
        self.vig_radius = max(math.hypot(cx - cxx, cy - cyy)
                              for cxx in (0, W - 1) for cyy in (0, H - 1))
        scale = min(1.0, min(W, H) / 1500.0)
        self.dust = []
        for _ in range(p.dust_motes):
            r = float(max(8.0, p.dust_radius * scale * rng.uniform(0.7, 1.4)))
            m = r + 4
            self.dust.append({"x": float(rng.uniform(m, W - 1 - m)),
                              "y": float(rng.uniform(m, H - 1 - m)),
                              "radius": r, "inner": 0.45 * r, "softness": max(1.0, 0.06 * r),
                              "depth": float(p.dust_depth * rng.uniform(0.6, 1.4))})
        S = self.vignetting_field()
        S *= self.dust_field()
        if p.prnu > 0:
            S *= (1.0 + rng.standard_normal((H, W), dtype=np.float32) * np.float32(p.prnu))
        self.S = S
        # m_c: mean response of the pixels of each colour -> truth units
        if self.pattern is None:
            self.flat_norm = np.array([S.mean(dtype=np.float64)] * 3)
        else:
            sums, counts = np.zeros(3), np.zeros(3)
            for dy in range(2):
                for dx in range(2):
                    c = self.chan[dy, dx]
                    sub = S[dy::2, dx::2]
                    sums[c] += sub.sum(dtype=np.float64)
                    counts[c] += sub.size
            self.flat_norm = sums / counts

    # -- sky ----------------------------------------------------------------------
    def _band(self, rgb: np.ndarray) -> np.ndarray:
        """Per-colour values (..., 3) -> what the sensor's bands see (..., nch)."""
        rgb = np.asarray(rgb, np.float64) * np.asarray(self.p.filter_transmission)
        if self.nch == 1:
            return rgb.sum(axis=-1, keepdims=True)
        return rgb

    def _make_sky(self) -> None:
        p, (H, W) = self.p, self.shape
        rng = _rng(p.seed, 3)
        L = min(W, H)
        # gradient (e-/s per px, reference coords), per colour: c0 + cx * x + cy * y
        phi = math.radians(p.sky_gradient_angle)
        half_diag = 0.5 * math.hypot(W, H)
        xc, yc = (W - 1) / 2.0, (H - 1) / 2.0
        gx = p.sky_gradient * math.cos(phi) / half_diag
        gy = p.sky_gradient * math.sin(phi) / half_diag
        col = np.asarray(p.sky_color, np.float64) * p.sky_rate
        self.grad_rgb = np.stack([col * (1 - gx * xc - gy * yc), col * gx, col * gy], axis=1)

        # stars over the reference frame plus a margin for dithers and rotation
        margin = p.dither + math.radians(p.rotation) * math.hypot(W, H) / 2 + 20
        area = (W + 2 * margin) * (H + 2 * margin)
        n = int(rng.poisson(p.star_density * area / 1e6))
        xs = rng.uniform(-margin, W - 1 + margin, n)
        ys = rng.uniform(-margin, H - 1 + margin, n)
        umin = p.star_flux_range ** (-p.star_slope)
        u = rng.uniform(umin, 1.0, n)
        flux = p.star_flux_min * u ** (-1.0 / p.star_slope)         # e-/s in G
        tint = rng.uniform(-1.0, 1.0, n)                             # blue .. red
        rgb = np.stack([1 + 0.35 * tint, np.ones(n), 1 - 0.35 * tint], axis=1) * flux[:, None]
        # make sure a few stars inside the frame saturate in the reference light
        alpha = _moffat_alpha(p.fwhm, p.moffat_beta)
        peak_per_flux = (p.moffat_beta - 1) / (math.pi * alpha * alpha) * p.exposure
        full_e = (_FULL - p.bias_level) * p.gain
        inside = (xs > 10) & (xs < W - 11) & (ys > 10) & (ys < H - 11)
        band_rgb = self._band(rgb)
        peak = band_rgb.max(axis=1) * peak_per_flux
        need = p.min_saturated - int(((peak > full_e) & inside).sum())
        if need > 0:
            cand = np.flatnonzero(inside & (peak <= full_e))
            cand = cand[np.argsort(-peak[cand])][:need]
            for i in cand:
                factor = rng.uniform(1.5, 4.0) * full_e / max(peak[i], 1e-9)
                rgb[i] *= factor
        self.star_x, self.star_y = xs, ys
        self.star_rgb = rgb                                            # e-/s (n, 3)
        self.star_band = self._band(rgb)                               # e-/s (n, nch)

        # nebula: elliptical Gaussians (blobs, filaments along random walks, knots)
        comps = []   # (x, y, sigma_major, sigma_minor, angle, r, g, b, amp)
        ncx = xc + rng.normal(0, 0.08) * W
        ncy = yc + rng.normal(0, 0.08) * H
        ha, oiii, refl = (1.0, 0.28, 0.42), (0.35, 0.9, 1.0), (0.45, 0.65, 1.0)
        for _ in range(3):
            comps.append((ncx + rng.normal(0, 0.12 * L), ncy + rng.normal(0, 0.12 * L),
                          rng.uniform(0.15, 0.3) * L, rng.uniform(0.08, 0.2) * L,
                          rng.uniform(0, math.pi), *ha, rng.uniform(0.4, 0.7)))
        for _ in range(2):
            comps.append((ncx + rng.normal(0, 0.2 * L), ncy + rng.normal(0, 0.2 * L),
                          rng.uniform(0.06, 0.12) * L, rng.uniform(0.04, 0.1) * L,
                          rng.uniform(0, math.pi), *refl, rng.uniform(0.3, 0.5)))
        for chain in range(4):
            x, y = ncx + rng.normal(0, 0.1 * L), ncy + rng.normal(0, 0.1 * L)
            ang = rng.uniform(0, 2 * math.pi)
            colr = ha if chain % 2 == 0 else oiii
            for _ in range(9):
                seg = rng.uniform(0.04, 0.08) * L
                comps.append((x, y, seg, max(1.5, rng.uniform(0.006, 0.015) * L), ang, *colr,
                              rng.uniform(0.4, 1.0)))
                x += 1.4 * seg * math.cos(ang)
                y += 1.4 * seg * math.sin(ang)
                ang += rng.normal(0, 0.35)
        for _ in range(10):
            comps.append((ncx + rng.normal(0, 0.15 * L), ncy + rng.normal(0, 0.15 * L),
                          *(rng.uniform(0.008, 0.025) * L,) * 2, 0.0, *ha, rng.uniform(0.3, 0.8)))
        # clumpy texture inside the diffuse cloud
        for _ in range(40):
            s_ = rng.uniform(0.02, 0.06) * L
            comps.append((ncx + rng.normal(0, 0.2 * L), ncy + rng.normal(0, 0.15 * L),
                          s_, s_ * rng.uniform(0.4, 1.0), rng.uniform(0, math.pi),
                          *(ha if rng.random() < 0.7 else refl), rng.uniform(0.1, 0.35)))
        c = np.array(comps, np.float64)
        s1, s2, th = c[:, 2], c[:, 3], c[:, 4]
        ct, st = np.cos(th), np.sin(th)
        self.neb_cx, self.neb_cy = c[:, 0].copy(), c[:, 1].copy()
        self.neb_qa = ct ** 2 / s1 ** 2 + st ** 2 / s2 ** 2
        self.neb_qb = ct * st * (1 / s1 ** 2 - 1 / s2 ** 2)
        self.neb_qc = st ** 2 / s1 ** 2 + ct ** 2 / s2 ** 2
        ext_x = 4.0 * np.sqrt((s1 * ct) ** 2 + (s2 * st) ** 2)
        ext_y = 4.0 * np.sqrt((s1 * st) ** 2 + (s2 * ct) ** 2)
        self.neb_box = (self.neb_cx - ext_x, self.neb_cx + ext_x,
                        self.neb_cy - ext_y, self.neb_cy + ext_y)
        amps = c[:, 5:8] * c[:, 8:9]
        # scale so that the nebula's peak (brightest colour) = brightness * sky level
        step = max(1, L // 200)
        coarse = np.zeros((H // step, W // step), np.float32)
        T = np.diag([float(step), float(step), 1.0])
        peak = 0.0
        for ch in range(3):
            one = np.zeros((3, 3))
            one[ch, ch] = 1.0
            _render_smooth(coarse, np.full((2, 2), ch, np.int64), T, np.zeros((3, 3)), 0.0,
                           self.neb_cx, self.neb_cy, self.neb_qa, self.neb_qb, self.neb_qc,
                           *self.neb_box, amps, 1.0)
            peak = max(peak, float(coarse.max()))
        scale_n = p.nebula_brightness * p.sky_rate / max(peak, 1e-12)
        self.neb_rgb = amps * scale_n                                  # e-/s (K, 3)

    # -- per-light geometry and conditions --------------------------------------------
    def _make_lights(self) -> None:
        p, (H, W) = self.p, self.shape
        rng = _rng(p.seed, 4)
        n = p.n_lights
        cx, cy = (W - 1) / 2.0, (H - 1) / 2.0
        self.transforms = []
        for k in range(n):
            if k == 0:
                self.transforms.append(np.eye(3))
            else:
                self.transforms.append(_rotation_matrix(
                    rng.uniform(-p.dither, p.dither), rng.uniform(-p.dither, p.dither),
                    rng.uniform(-p.rotation, p.rotation), cx, cy))
        frac = np.arange(n) / max(n - 1, 1)
        drift = rng.uniform(-1, 1)
        self.sky_levels = 1.0 + p.sky_variation * (drift * frac + 0.3 * rng.uniform(-1, 1, n) * (frac > 0))
        tr_drift = rng.uniform(-1, 1)
        self.transparency = 1.0 + p.transparency_variation * (
            tr_drift * frac - 0.5 * rng.uniform(0, 1, n) * (frac > 0))
        self.fwhms = p.fwhm * (1.0 + p.fwhm_variation * rng.uniform(-1, 1, n) * (frac > 0))
        self.sky_levels[0] = self.transparency[0] = 1.0
        self.fwhms[0] = p.fwhm
        self.satellite = None
        if p.satellite and n >= 2:
            k = n // 2
            # a line entering on the left edge and leaving on the right edge
            y_in, y_out = rng.uniform(0.1, 0.9, 2) * (H - 1)
            p0, p1 = np.array([0.0, y_in]), np.array([W - 1.0, y_out])
            d = p1 - p0
            nrm = np.array([-d[1], d[0]]) / np.hypot(*d)
            sigma = 1.2 * p.fwhm / 2.3548
            self.satellite = {"light_index": k, "p0": p0.tolist(), "p1": p1.tolist(),
                              "normal": nrm.tolist(), "d0": float(nrm @ p0),
                              "sigma": sigma, "peak_e": float(rng.uniform(2000, 6000)),
                              "p0_ref": (self.transforms[k] @ [*p0, 1])[:2].tolist(),
                              "p1_ref": (self.transforms[k] @ [*p1, 1])[:2].tolist()}

    # -- rendering ------------------------------------------------------------------
    def _render_signal(self, out, chan, T, sky_f, neb_f, fwhm, band_idx=None, *,
                       stars=True, smooth=True):
        """Render expected electrons of one ``exposure`` into ``out`` (overwritten).

        ``sky_f`` scales the gradient, ``neb_f`` (transparency) the nebula and stars;
        ``band_idx`` selects one colour of the truth (``chan`` then all zeros).
        """
        p = self.p
        t = p.exposure
        if band_idx is None:
            grad = self._band_grad() * t
            amps = self._band(self.neb_rgb) * t
            flux = self.star_band * t
        else:   # one colour channel of the truth: channel index ``band_idx`` in slot 0
            grad = self._band_grad()[band_idx:band_idx + 1] * t if self.nch == 3 else self._band_grad() * t
            amps = (self._band(self.neb_rgb)[:, band_idx:band_idx + 1] if self.nch == 3
                    else self._band(self.neb_rgb)) * t
            flux = (self.star_band[:, band_idx:band_idx + 1] if self.nch == 3
                    else self.star_band) * t
        _render_smooth(out, chan, T, np.ascontiguousarray(grad), sky_f if smooth else 0.0,
                       self.neb_cx, self.neb_cy, self.neb_qa, self.neb_qb, self.neb_qc,
                       *self.neb_box, np.ascontiguousarray(amps), neb_f if smooth else 0.0)
        if not stars:
            return
        Tinv = np.linalg.inv(T)
        xs = Tinv[0, 0] * self.star_x + Tinv[0, 1] * self.star_y + Tinv[0, 2]
        ys = Tinv[1, 0] * self.star_x + Tinv[1, 1] * self.star_y + Tinv[1, 2]
        beta = p.moffat_beta
        alpha = _moffat_alpha(fwhm, beta)
        fl = np.ascontiguousarray(flux * neb_f)
        # stamp radius where the profile falls below 0.02 e- per pixel
        # from all bands, so the truth's channels use the lights' stamps exactly
        peak = self.star_band.max(axis=1) * (t * neb_f * (beta - 1) / (math.pi * alpha ** 2))
        rad = alpha * np.sqrt(np.maximum(peak / 0.02, 1.0) ** (1.0 / beta) - 1.0)
        rad = np.clip(rad, 2.0 * fwhm, 80.0)
        H, W = out.shape
        keep = (xs > -rad) & (xs < W - 1 + rad) & (ys > -rad) & (ys < H - 1 + rad)
        _render_stars(out, chan, np.ascontiguousarray(xs[keep]), np.ascontiguousarray(ys[keep]),
                      np.ascontiguousarray(fl[keep]), alpha, beta,
                      np.ascontiguousarray(rad[keep]), 3)

    def _band_grad(self) -> np.ndarray:
        g = self.grad_rgb * np.asarray(self.p.filter_transmission)[:, None]
        if self.nch == 1:
            return g.sum(axis=0, keepdims=True)
        return g

    def truth_sky(self) -> np.ndarray:
        """Noiseless reference sky in calibrated units: float32 (3, H, W) or (H, W)."""
        p, (H, W) = self.p, self.shape
        chans = range(3) if self.nch == 3 else [0]
        out = np.empty((len(chans), H, W), np.float32)
        zero = np.zeros((2, 2), np.int64)
        for i, c in enumerate(chans):
            self._render_signal(out[i], zero, np.eye(3), 1.0, 1.0, p.fwhm,
                                band_idx=c if self.nch == 3 else None)
            out[i] *= np.float32(self.flat_norm[c] / (p.gain * _FULL))
        return out if self.nch == 3 else out[0]

    def star_table(self) -> dict:
        """All stars (reference coordinates) with fluxes in truth units."""
        p = self.p
        t = p.exposure
        if self.nch == 3:
            fl = self.star_band * t * self.flat_norm[None, :] / (p.gain * _FULL)
            flux = fl.mean(axis=1)
        else:
            f = self.star_band[:, 0] * t * self.flat_norm[0] / (p.gain * _FULL)
            fl = np.stack([f, f, f], axis=1)
            flux = f
        alpha = _moffat_alpha(p.fwhm, p.moffat_beta)
        peak_e = self.star_band.max(axis=1) * t * (p.moffat_beta - 1) / (math.pi * alpha ** 2)
        H, W = self.shape
        xi = np.clip(np.round(self.star_x).astype(int), 0, W - 1)
        yi = np.clip(np.round(self.star_y).astype(int), 0, H - 1)
        sky_e = self._band_grad().max(axis=0)[0] * t
        sat = (p.bias_level + (peak_e * self.S[yi, xi] + sky_e) / p.gain) >= _FULL
        inside = ((self.star_x >= -0.5) & (self.star_x <= W - 0.5)
                  & (self.star_y >= -0.5) & (self.star_y <= H - 0.5))
        return {"x": self.star_x, "y": self.star_y, "flux": flux, "flux_r": fl[:, 0],
                "flux_g": fl[:, 1], "flux_b": fl[:, 2],
                "fwhm": np.full(len(flux), p.fwhm), "saturated": sat, "inside": inside}

    # -- frames ----------------------------------------------------------------------
    def _expose(self, kind: str, index: int, *, mode: int, signal=None, levels=None,
                t_dark: float = 0.0) -> np.ndarray:
        p = self.p
        out = np.empty(self.shape, np.uint16)
        dummy = np.zeros((1, 1), np.float32)
        _expose(out, mode, signal if signal is not None else dummy,
                np.asarray(levels if levels is not None else [0.0, 0.0, 0.0], np.float64),
                self.chan, self.S, self.dark, float(t_dark), self.bias,
                p.read_noise / p.gain, 1.0 / p.gain, _frame_seed(p.seed, _KIND[kind], index),
                self.dead_rc[:, 0], self.dead_rc[:, 1], self.dead_v.astype(np.float64))
        return out

    def bias_frame(self, index: int) -> np.ndarray:
        """uint16 (H, W) bias frame ``index``."""
        return self._expose("bias", index, mode=0)

    def _cosmic_rays(self, rng, n_mean) -> list:
        """Random hits: 1-3 px dots or short tracks; list of [row, col, electrons]."""
        H, W = self.shape
        hits = []
        for _ in range(int(rng.poisson(n_mean))):
            x, y = rng.uniform(2, W - 3), rng.uniform(2, H - 3)
            length = 0 if rng.random() < 0.6 else rng.uniform(2, 10)
            ang = rng.uniform(0, math.pi)
            e = rng.uniform(1500, 25000)
            pts = {(int(round(y + s * math.sin(ang))), int(round(x + s * math.cos(ang))))
                   for s in np.linspace(0, length, max(1, int(length * 1.5) + 1))}
            if length == 0 and rng.random() < 0.5:
                pts.add((int(round(y)), int(round(x)) + 1))
            for r, c in sorted(pts):
                if 0 <= r < H and 0 <= c < W:
                    hits.append([r, c, float(e * rng.uniform(0.4, 1.0))])
        return hits

    def dark_frame(self, index: int, *, exposure: Optional[float] = None,
                   kind: str = "dark") -> tuple[np.ndarray, list]:
        """uint16 dark of ``exposure`` s (default: the lights') and its cosmic rays."""
        p = self.p
        t = p.exposure if exposure is None else exposure
        hits = self._cosmic_rays(_rng(p.seed, 8, _KIND[kind], index), p.cosmic_rays * t / p.exposure)
        if hits:
            sig = np.zeros(self.shape, np.float32)
            for r, c, e in hits:
                sig[r, c] += e / self.S[r, c]
            return self._expose(kind, index, mode=2, signal=sig, t_dark=t), hits
        return self._expose(kind, index, mode=0, t_dark=t), hits

    def flat_levels(self, index: int) -> np.ndarray:
        """Expected flat electrons at S = 1 per sensor band (R, G, B slots)."""
        p = self.p
        jitter = 1.0 + 0.01 * _rng(p.seed, 9, index).uniform(-1, 1)
        g = p.flat_level * (_FULL - p.bias_level) * p.gain * jitter
        col = np.asarray(p.flat_color, np.float64) / max(p.flat_color)
        return (col * g) if self.nch == 3 else np.array([g, g, g])

    def flat_frame(self, index: int) -> np.ndarray:
        """uint16 sky flat ``index``."""
        return self._expose("flat", index, mode=1, levels=self.flat_levels(index),
                            t_dark=self.p.flat_exposure)

    def light_signal(self, k: int, *, stars: bool = True, smooth: bool = True,
                     satellite: bool = True) -> np.ndarray:
        """Expected sky electrons of light ``k`` *before* the sensor response ``S``:
        float32 ``(H, W)`` mosaic of stars, the smooth sky (nebula + gradient) and
        the satellite trail, each of which can be left out."""
        sig = np.empty(self.shape, np.float32)
        self._render_signal(sig, self.chan, self.transforms[k], float(self.sky_levels[k]),
                            float(self.transparency[k]), float(self.fwhms[k]),
                            stars=stars, smooth=smooth)
        if satellite and self.satellite is not None and self.satellite["light_index"] == k:
            s = self.satellite
            lv = self._band(np.full(3, s["peak_e"]))
            lv = lv if self.nch == 3 else np.repeat(lv, 3)
            _render_line(sig, self.chan, s["normal"][0], s["normal"][1], s["d0"], s["sigma"],
                         np.asarray(lv, np.float64))
        return sig

    def truth_light(self, k: int) -> np.ndarray:
        """What a perfect calibration of light ``k`` gives, in its own grid: the CFA
        mosaic (or mono image) of the sky in truth units (see module docstring),
        float32 ``(H, W)``, including the satellite trail, without cosmic rays.
        ``truth_light(0)`` is ``mosaic(truth.sky, pattern)``."""
        sig = self.light_signal(k)
        scale = np.empty((2, 2), np.float32)
        for dy in range(2):
            for dx in range(2):
                c = self.chan[dy, dx] if self.nch == 3 else 0
                scale[dy, dx] = self.flat_norm[c] / (self.p.gain * _FULL)
        for dy in range(2):
            for dx in range(2):
                sig[dy::2, dx::2] *= scale[dy, dx]
        return sig

    def expected_light(self, k: int) -> np.ndarray:
        """Noiseless expectation of light ``k`` in electrons (sky * S + dark current),
        without cosmic rays, bias or clipping: float32 ``(H, W)``. The variance of a
        pixel of the frame in ADU is ``(expected + read_noise**2) / gain**2``."""
        sig = self.light_signal(k)
        sig *= self.S
        sig += self.dark * np.float32(self.p.exposure)
        return sig

    def light_frame(self, k: int) -> tuple[np.ndarray, list]:
        """uint16 light ``k`` and its cosmic-ray hits ([row, col, electrons])."""
        p = self.p
        sig = self.light_signal(k)
        hits = self._cosmic_rays(_rng(p.seed, 8, _KIND["light"], k), p.cosmic_rays)
        for r, c, e in hits:
            sig[r, c] += e / self.S[r, c]
        return self._expose("light", k, mode=2, signal=sig, t_dark=p.exposure), hits
