//! The geometry of a flying-shapes pair: textures, outlines, affine motions, and the
//! renderer that evaluates them at pixel centres.

use std::f64::consts::PI;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::{
    FlyingShapesConfig, Frame, TEXTURE_MAX_AMPLITUDE, TEXTURE_MAX_FREQUENCY, TEXTURE_MIN_FREQUENCY,
    TEXTURE_WAVES,
};

type Mat = [[f64; 2]; 2];

fn mat_mul(a: &Mat, b: &Mat) -> Mat {
    let e = |i: usize, j: usize| a[i][0] * b[0][j] + a[i][1] * b[1][j];
    [[e(0, 0), e(0, 1)], [e(1, 0), e(1, 1)]]
}

fn mat_inv(m: &Mat) -> Mat {
    let det = m[0][0] * m[1][1] - m[0][1] * m[1][0];
    [
        [m[1][1] / det, -m[0][1] / det],
        [-m[1][0] / det, m[0][0] / det],
    ]
}

fn apply(m: &Mat, p: [f64; 2]) -> [f64; 2] {
    [
        m[0][0] * p[0] + m[0][1] * p[1],
        m[1][0] * p[0] + m[1][1] * p[1],
    ]
}

fn rotation(theta: f64) -> Mat {
    let (s, c) = theta.sin_cos();
    [[c, -s], [s, c]]
}

/// Uniform in `[lo, hi)` (`lo` when they are equal, without the panic of an empty range).
fn uniform(rng: &mut ChaCha8Rng, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * rng.random::<f64>()
}

/// A smooth texture: a mean plus sinusoids in the surface's own coordinates.
#[derive(Debug, Clone)]
struct Texture {
    mean: f64,
    /// Per wave: angular frequencies along the two axes, phase, amplitude.
    waves: [[f64; 4]; TEXTURE_WAVES],
}

impl Texture {
    fn random(rng: &mut ChaCha8Rng) -> Self {
        let mean = uniform(rng, 0.25, 0.75);
        let total = uniform(rng, 0.4, 1.0) * TEXTURE_MAX_AMPLITUDE;
        let weights: [f64; TEXTURE_WAVES] = std::array::from_fn(|_| uniform(rng, 0.2, 1.0));
        let sum: f64 = weights.iter().sum();
        // directions spread over half a turn, so no direction lacks texture
        let start = uniform(rng, 0.0, PI);
        let waves = std::array::from_fn(|j| {
            let dir = start + PI * (j as f64 + uniform(rng, 0.0, 1.0)) / TEXTURE_WAVES as f64;
            let f = uniform(rng, TEXTURE_MIN_FREQUENCY, TEXTURE_MAX_FREQUENCY);
            let (s, c) = dir.sin_cos();
            [
                f * c,
                f * s,
                uniform(rng, 0.0, 2.0 * PI),
                total * weights[j] / sum,
            ]
        });
        Self { mean, waves }
    }

    fn at(&self, u: [f64; 2]) -> f64 {
        self.mean
            + self
                .waves
                .iter()
                .map(|[fx, fy, ph, a]| a * (fx * u[0] + fy * u[1] + ph).sin())
                .sum::<f64>()
    }
}

/// The outline of a surface in its own coordinates.
#[derive(Debug, Clone)]
enum Outline {
    /// The unbounded background.
    Plane,
    Ellipse([f64; 2]),
    Rectangle([f64; 2]),
    Triangle([[f64; 2]; 3]),
}

impl Outline {
    fn random(r: f64, rng: &mut ChaCha8Rng) -> Self {
        match rng.random_range(0..3) {
            0 => Outline::Ellipse([r, r * uniform(rng, 0.5, 1.0)]),
            1 => Outline::Rectangle([r * uniform(rng, 0.6, 0.9), r * uniform(rng, 0.4, 0.9)]),
            _ => {
                let a0 = uniform(rng, 0.0, 2.0 * PI);
                Outline::Triangle(std::array::from_fn(|j| {
                    let a = a0 + 2.0 * PI * j as f64 / 3.0 + uniform(rng, -0.4, 0.4);
                    let rr = r * uniform(rng, 0.7, 1.0);
                    [rr * a.cos(), rr * a.sin()]
                }))
            }
        }
    }

    fn contains(&self, u: [f64; 2]) -> bool {
        match self {
            Outline::Plane => true,
            Outline::Ellipse([a, b]) => (u[0] / a).powi(2) + (u[1] / b).powi(2) <= 1.0,
            Outline::Rectangle([a, b]) => u[0].abs() <= *a && u[1].abs() <= *b,
            Outline::Triangle(p) => {
                let side = |a: [f64; 2], b: [f64; 2]| {
                    (b[0] - a[0]) * (u[1] - a[1]) - (b[1] - a[1]) * (u[0] - a[0])
                };
                let s = [side(p[0], p[1]), side(p[1], p[2]), side(p[2], p[0])];
                s.iter().all(|&v| v >= 0.0) || s.iter().all(|&v| v <= 0.0)
            }
        }
    }
}

/// A textured surface and its motion. Its points `u` (own coordinates) are at
/// `center + shift[f] + linear[f] u` in frame `f`, with `shift[0] = 0`, `linear[0] = R(alpha)`
/// and `linear[1] = A R(alpha)`: the motion maps `x` to `center + shift[1] + A (x - center)`.
#[derive(Debug, Clone)]
struct Surface {
    outline: Outline,
    texture: Texture,
    center: [f64; 2],
    shift: [[f64; 2]; 2],
    /// Inverse of the linear part in each frame (image to own coordinates).
    inverse: [Mat; 2],
    motion: Mat,
}

impl Surface {
    fn new(
        outline: Outline,
        center: [f64; 2],
        cfg: &FlyingShapesConfig,
        amount: f64,
        rng: &mut ChaCha8Rng,
    ) -> Self {
        let texture = Texture::random(rng);
        let placement = rotation(uniform(rng, 0.0, 2.0 * PI));
        let sym = |rng: &mut ChaCha8Rng, m: f64| uniform(rng, -m, m) * amount;
        let mut t = [sym(rng, cfg.max_translation), sym(rng, cfg.max_translation)];
        if cfg.integer_translation {
            t = t.map(f64::round);
        }
        let theta = sym(rng, cfg.max_rotation);
        let sx = 1.0 + sym(rng, cfg.max_scale_change);
        let sy = 1.0 + sym(rng, cfg.max_scale_change);
        let motion = mat_mul(&rotation(theta), &[[sx, 0.0], [0.0, sy]]);
        Self {
            outline,
            texture,
            center,
            shift: [[0.0; 2], t],
            inverse: [mat_inv(&placement), mat_inv(&mat_mul(&motion, &placement))],
            motion,
        }
    }

    /// Own coordinates of image point `p` in frame `f`. The subtractions come first so that
    /// an integer shift of an integer point is exact.
    fn local(&self, f: usize, p: [f64; 2]) -> [f64; 2] {
        let q = [
            (p[0] - self.shift[f][0]) - self.center[0],
            (p[1] - self.shift[f][1]) - self.center[1],
        ];
        apply(&self.inverse[f], q)
    }

    /// Where the point `p` of frame 1 goes, minus `p`.
    fn flow(&self, p: [f64; 2]) -> [f64; 2] {
        let d = [p[0] - self.center[0], p[1] - self.center[1]];
        let m = apply(&self.motion, d);
        [
            self.shift[1][0] + (m[0] - d[0]),
            self.shift[1][1] + (m[1] - d[1]),
        ]
    }
}

/// The geometry of one frame pair: a background and shapes in depth order, each with its
/// texture and its affine motion (see the [module](super) documentation). Coordinates are
/// `(x, y)` = (column, row), pixel centres at integers.
#[derive(Debug, Clone)]
pub struct FlowScene {
    height: usize,
    width: usize,
    /// The background first, then the shapes from bottom to top.
    surfaces: Vec<Surface>,
}

impl FlowScene {
    pub(super) fn random(cfg: &FlyingShapesConfig, rng: &mut ChaCha8Rng) -> Self {
        let (h, w) = (cfg.height as f64, cfg.width as f64);
        let middle = [(w - 1.0) / 2.0, (h - 1.0) / 2.0];
        let mut surfaces = vec![Surface::new(
            Outline::Plane,
            middle,
            cfg,
            cfg.background_motion,
            rng,
        )];
        let count = rng.random_range(cfg.shapes.0..=cfg.shapes.1);
        for _ in 0..count {
            let r = h.min(w) * uniform(rng, cfg.shape_size.0, cfg.shape_size.1);
            let outline = Outline::random(r, rng);
            let center = [uniform(rng, 0.0, w - 1.0), uniform(rng, 0.0, h - 1.0)];
            surfaces.push(Surface::new(outline, center, cfg, 1.0, rng));
        }
        Self {
            height: cfg.height,
            width: cfg.width,
            surfaces,
        }
    }

    /// Image height.
    pub fn height(&self) -> usize {
        self.height
    }

    /// Image width.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Number of surfaces: the background (surface 0) and the shapes (1 and up, higher ones
    /// drawn over lower ones).
    pub fn surfaces(&self) -> usize {
        self.surfaces.len()
    }

    /// The topmost surface at point `(x, y)` of `frame`.
    pub fn surface_at(&self, frame: Frame, x: f64, y: f64) -> usize {
        self.top(frame_index(frame), [x, y]).0
    }

    /// The topmost surface of `frame` at `p` and `p` in its own coordinates.
    fn top(&self, f: usize, p: [f64; 2]) -> (usize, [f64; 2]) {
        for (k, s) in self.surfaces.iter().enumerate().rev() {
            let u = s.local(f, p);
            if s.outline.contains(u) {
                return (k, u);
            }
        }
        unreachable!("the background plane contains every point")
    }

    /// The intensity of `frame` at point `(x, y)`, in `[0, 1]` (what the rendered frame holds
    /// at pixel centres).
    pub fn intensity_at(&self, frame: Frame, x: f64, y: f64) -> f64 {
        let (k, u) = self.top(frame_index(frame), [x, y]);
        self.surfaces[k].texture.at(u).clamp(0.0, 1.0)
    }

    /// The exact flow `[u, v]` at point `(x, y)` of frame 1: the displacement of the topmost
    /// surface there.
    pub fn flow_at(&self, x: f64, y: f64) -> [f64; 2] {
        let (k, _) = self.top(0, [x, y]);
        self.surfaces[k].flow([x, y])
    }

    /// Renders both frames (`[2, H, W]`), the flow (`[2, H, W]`) and the visibility (`[H, W]`)
    /// into the given buffers.
    pub(super) fn render_into(&self, frames: &mut [f32], flow: &mut [f32], visible: &mut [f32]) {
        let (h, w) = (self.height, self.width);
        let hw = h * w;
        let (wmax, hmax) = ((w - 1) as f64, (h - 1) as f64);
        for r in 0..h {
            for c in 0..w {
                let i = r * w + c;
                let p = [c as f64, r as f64];
                let (k, u) = self.top(0, p);
                let s = &self.surfaces[k];
                frames[i] = s.texture.at(u).clamp(0.0, 1.0) as f32;
                let (k2, u2) = self.top(1, p);
                frames[hw + i] = self.surfaces[k2].texture.at(u2).clamp(0.0, 1.0) as f32;
                let d = s.flow(p);
                flow[i] = d[0] as f32;
                flow[hw + i] = d[1] as f32;
                let q = [p[0] + d[0], p[1] + d[1]];
                let inside = (0.0..=wmax).contains(&q[0]) && (0.0..=hmax).contains(&q[1]);
                visible[i] = f32::from(u8::from(inside && self.top(1, q).0 == k));
            }
        }
    }
}

fn frame_index(frame: Frame) -> usize {
    match frame {
        Frame::First => 0,
        Frame::Second => 1,
    }
}
