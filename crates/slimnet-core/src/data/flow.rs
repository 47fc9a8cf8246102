//! Synthetic optical flow: "flying shapes" frame pairs with their exact flow, for training
//! and measuring FlowNet-style networks ([`models::flownet_simple`](crate::models::flownet_simple)).
//!
//! A scene is a textured background plane and a few textured shapes (ellipses, rectangles,
//! triangles) drawn over it in depth order. Every surface has its own random affine motion
//! (translation, rotation and a scale change per axis, about its own centre). Both frames are
//! rendered analytically from the transforms (frame 2 from the moved geometry; no image is
//! warped), so the flow is exact: at a pixel of frame 1 it is the displacement of the topmost
//! surface there, `M(x) - x`, where `M` is that surface's motion.
//!
//! Textures are sums of [`TEXTURE_WAVES`] sinusoids of random direction in the surface's own
//! coordinates (they move with it), so motion is observable everywhere, the aperture problem
//! is avoided (the waves point in different directions), and the intensities are smooth:
//! bilinear interpolation of a frame is accurate to a bound that follows from
//! [`TEXTURE_MAX_AMPLITUDE`] and [`TEXTURE_MAX_FREQUENCY`].
//!
//! Frames are grayscale, so a pair is a 2-channel input `[2, H, W]` (frame 1, frame 2). Colour
//! adds little to flow on this data (the textures already make every surface distinct), would
//! triple the input and the first layer's work, and FlowNet's own inputs are just the stacked
//! frames whatever their channel count.
//!
//! Sample `i` of a split depends only on the seed, the split and `i` (it draws from its own
//! ChaCha stream), so the splits are disjoint and reproducible, any range of samples can be
//! generated on its own, and generation runs in parallel (rayon) with the same result.
//!
//! ```
//! use slimnet_core::data::flow::{flying_shapes, FlowSplit, FlyingShapesConfig};
//! let cfg = FlyingShapesConfig::new(32, 32).with_seed(7);
//! let train = flying_shapes(4, FlowSplit::Train, &cfg)?;
//! assert_eq!(train.inputs.shape(), &[4, 2, 32, 32]);
//! assert_eq!(train.flows.shape(), &[4, 2, 32, 32]);
//! assert!(train.inputs.iter().all(|v| (0.0..=1.0).contains(v)));
//! // the same samples again, and other ones for the test split
//! assert_eq!(flying_shapes(4, FlowSplit::Train, &cfg)?.inputs, train.inputs);
//! assert_ne!(flying_shapes(4, FlowSplit::Test, &cfg)?.inputs, train.inputs);
//! # Ok::<(), slimnet_core::Error>(())
//! ```

use std::f64::consts::PI;
use std::ops::Range;

use ndarray::{Axis, IxDyn};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::tensor::Tensor;

mod scene;

pub use scene::FlowScene;

/// Number of sinusoids summed in each surface's texture.
pub const TEXTURE_WAVES: usize = 4;
/// Upper bound of the sum of the amplitudes of a texture's sinusoids (each texture's mean is
/// in `[0.25, 0.75]`, so intensities stay in `[0, 1]`).
pub const TEXTURE_MAX_AMPLITUDE: f64 = 0.25;
/// Lowest angular frequency of a texture sinusoid, in radians per pixel of the surface.
pub const TEXTURE_MIN_FREQUENCY: f64 = 0.15;
/// Highest angular frequency of a texture sinusoid, in radians per pixel of the surface
/// (wavelengths of at least `2 pi / 0.6 = 10.5` pixels).
pub const TEXTURE_MAX_FREQUENCY: f64 = 0.6;

/// Largest sample index of a split (indices select ChaCha streams below a split tag).
const MAX_INDEX: usize = 1 << 48;
/// Largest image side and number of shapes accepted (beyond them the work is unreasonable).
const MAX_SIDE: usize = 1 << 14;
const MAX_SHAPES: usize = 1024;

/// Which part of the data a sample belongs to. Each split draws its samples from its own
/// random streams, so the splits never share a sample, whatever their sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlowSplit {
    /// Training samples.
    Train,
    /// Validation samples (model selection, early stopping).
    Validation,
    /// Held-out test samples (the reported EPE).
    Test,
}

impl FlowSplit {
    /// The ChaCha stream of sample `index` (the split in the top bits, the index below).
    fn stream(self, index: usize) -> u64 {
        let tag: u64 = match self {
            FlowSplit::Train => 1,
            FlowSplit::Validation => 2,
            FlowSplit::Test => 3,
        };
        (tag << 56) | index as u64
    }
}

/// One of the two frames of a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Frame {
    /// The first frame, where the flow is defined.
    First,
    /// The second frame, rendered from the moved geometry.
    Second,
}

/// The settings of [`flying_shapes`]: image size, how many shapes, how far things move, and
/// the seed. `Default` is 64 x 64 with 1 to 4 shapes, translations up to 4 pixels, rotations
/// up to 0.1 rad, scale changes up to 10 % and a background that moves half as much as the
/// shapes: mean flow magnitudes of about 2 pixels, maxima near 7 (within the receptive field
/// of the 1/16-resolution features of [`flownet_simple`](crate::models::flownet_simple)).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct FlyingShapesConfig {
    /// Image height in pixels.
    pub height: usize,
    /// Image width in pixels.
    pub width: usize,
    /// Fewest and most shapes per image (inclusive; the count is uniform in between).
    pub shapes: (usize, usize),
    /// Smallest and largest shape radius, as fractions of the smaller image side.
    pub shape_size: (f64, f64),
    /// Largest translation per axis, in pixels (uniform in `[-max, max]`).
    pub max_translation: f64,
    /// Largest rotation, in radians (uniform in `[-max, max]`).
    pub max_rotation: f64,
    /// Largest relative scale change per axis (each scale uniform in `[1 - max, 1 + max]`).
    pub max_scale_change: f64,
    /// The background's motion ranges as a fraction of the shapes' (0 holds it still).
    pub background_motion: f64,
    /// Rounds every translation to whole pixels. With no rotation and no scale change, frame
    /// 2 is then an exact pixel shift of frame 1 wherever a surface stays visible (a check of
    /// the renderer, and data without interpolation for debugging a model).
    pub integer_translation: bool,
    /// The seed: with the split and the sample index it decides everything about a sample.
    pub seed: u64,
}

impl Default for FlyingShapesConfig {
    fn default() -> Self {
        Self {
            height: 64,
            width: 64,
            shapes: (1, 4),
            shape_size: (0.1, 0.3),
            max_translation: 4.0,
            max_rotation: 0.1,
            max_scale_change: 0.1,
            background_motion: 0.5,
            integer_translation: false,
            seed: 0,
        }
    }
}

impl FlyingShapesConfig {
    /// The defaults at another image size.
    pub fn new(height: usize, width: usize) -> Self {
        Self {
            height,
            width,
            ..Self::default()
        }
    }

    /// Sets the fewest and most shapes per image.
    pub fn with_shapes(mut self, min: usize, max: usize) -> Self {
        self.shapes = (min, max);
        self
    }

    /// Sets the range of shape radii, as fractions of the smaller image side.
    pub fn with_shape_size(mut self, min: f64, max: f64) -> Self {
        self.shape_size = (min, max);
        self
    }

    /// Sets the largest translation per axis, in pixels.
    pub fn with_max_translation(mut self, pixels: f64) -> Self {
        self.max_translation = pixels;
        self
    }

    /// Sets the largest rotation, in radians.
    pub fn with_max_rotation(mut self, radians: f64) -> Self {
        self.max_rotation = radians;
        self
    }

    /// Sets the largest relative scale change per axis.
    pub fn with_max_scale_change(mut self, change: f64) -> Self {
        self.max_scale_change = change;
        self
    }

    /// Sets the background's motion as a fraction of the shapes' (0 holds it still).
    pub fn with_background_motion(mut self, fraction: f64) -> Self {
        self.background_motion = fraction;
        self
    }

    /// Rounds translations to whole pixels (see the field).
    pub fn with_integer_translation(mut self, yes: bool) -> Self {
        self.integer_translation = yes;
        self
    }

    /// Sets the seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Checks the settings.
    ///
    /// ```
    /// use slimnet_core::data::flow::FlyingShapesConfig;
    /// assert!(FlyingShapesConfig::default().validate().is_ok());
    /// assert!(FlyingShapesConfig::new(0, 64).validate().is_err());
    /// assert!(FlyingShapesConfig::default().with_max_rotation(f64::NAN).validate().is_err());
    /// assert!(FlyingShapesConfig::default().with_shapes(3, 2).validate().is_err());
    /// ```
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the setting: a side of 0 or beyond 16384, a shape count range
    /// that is reversed or beyond 1024, shape sizes outside `(0, 1]` or reversed, a negative or
    /// non-finite motion range, a rotation beyond pi, or a scale change of 1 or more (a scale
    /// must stay positive).
    pub fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(Error::Invalid(format!("flying shapes: {what}")));
        let (h, w) = (self.height, self.width);
        if !(1..=MAX_SIDE).contains(&h) || !(1..=MAX_SIDE).contains(&w) {
            return bad(format!(
                "image size {h} x {w}; each side must be in 1..={MAX_SIDE}"
            ));
        }
        let (lo, hi) = self.shapes;
        if lo > hi || hi > MAX_SHAPES {
            return bad(format!(
                "shapes ({lo}, {hi}); need min <= max <= {MAX_SHAPES}"
            ));
        }
        let (a, b) = self.shape_size;
        if !(a > 0.0 && a <= b && b <= 1.0) {
            return bad(format!(
                "shape_size ({a}, {b}); need 0 < min <= max <= 1 (fractions of the smaller side)"
            ));
        }
        let ranges = [
            ("max_translation", self.max_translation, "", f64::INFINITY),
            ("max_rotation", self.max_rotation, " and at most pi", PI),
            (
                "max_scale_change",
                self.max_scale_change,
                " and below 1",
                1.0,
            ),
            (
                "background_motion",
                self.background_motion,
                "",
                f64::INFINITY,
            ),
        ];
        for (name, v, bound, limit) in ranges {
            let ok = v.is_finite() && v >= 0.0 && (v < limit || (v == PI && limit == PI));
            if !ok {
                return bad(format!("{name} = {v}; need a finite value >= 0{bound}"));
            }
        }
        if self.max_scale_change * self.background_motion.max(1.0) >= 1.0 {
            return bad(format!(
                "max_scale_change {} times background_motion {} reaches 1; a scale must stay positive",
                self.max_scale_change, self.background_motion
            ));
        }
        Ok(())
    }

    /// The geometry of sample `index` of `split`: what [`generate`](Self::generate) renders,
    /// for looking at single points (which surface is where, its exact flow).
    ///
    /// ```
    /// use slimnet_core::data::flow::{FlowSplit, FlyingShapesConfig, Frame};
    /// let cfg = FlyingShapesConfig::default().with_shapes(2, 2);
    /// let scene = cfg.scene(FlowSplit::Validation, 5)?;
    /// assert_eq!(scene.surfaces(), 3); // the background and two shapes
    /// let k = scene.surface_at(Frame::First, 31.0, 31.0);
    /// assert!(k < 3);
    /// let [u, v] = scene.flow_at(31.0, 31.0);
    /// assert!(u.hypot(v) < 20.0);
    /// # Ok::<(), slimnet_core::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`validate`](Self::validate), or an index of `2^48` or more.
    pub fn scene(&self, split: FlowSplit, index: usize) -> Result<FlowScene> {
        self.validate()?;
        if index >= MAX_INDEX {
            return Err(Error::Invalid(format!(
                "flying shapes: sample index {index} beyond 2^48"
            )));
        }
        Ok(self.scene_unchecked(split, index))
    }

    fn scene_unchecked(&self, split: FlowSplit, index: usize) -> FlowScene {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(split.stream(index));
        FlowScene::random(self, &mut rng)
    }

    /// Samples `range` of `split`, rendered: [`flying_shapes`] for any range of indices (so
    /// a long run can draw fresh batches without holding the whole set).
    ///
    /// ```
    /// use slimnet_core::data::flow::{flying_shapes, FlowSplit, FlyingShapesConfig};
    /// let cfg = FlyingShapesConfig::new(16, 16);
    /// let all = flying_shapes(5, FlowSplit::Train, &cfg)?;
    /// let tail = cfg.generate(FlowSplit::Train, 3..5)?;
    /// assert_eq!(tail.inputs, all.inputs.slice_axis(ndarray::Axis(0), (3..5).into()));
    /// # Ok::<(), slimnet_core::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`validate`](Self::validate), an index of `2^48` or more, or tensors beyond the
    /// memory ceiling of [`limits`](crate::limits).
    pub fn generate(&self, split: FlowSplit, range: Range<usize>) -> Result<FlowDataset> {
        self.validate()?;
        if range.end > MAX_INDEX {
            return Err(Error::Invalid(format!(
                "flying shapes: sample range {range:?} beyond 2^48"
            )));
        }
        let (n, h, w) = (range.len(), self.height, self.width);
        let hw = h * w;
        crate::limits::check_shape("flying shapes inputs", &[n, 2, h, w], 4)?;
        let mut inputs = vec![0.0f32; n * 2 * hw];
        let mut flows = vec![0.0f32; n * 2 * hw];
        let mut visible = vec![0.0f32; n * hw];
        inputs
            .par_chunks_mut(2 * hw)
            .zip(flows.par_chunks_mut(2 * hw))
            .zip(visible.par_chunks_mut(hw))
            .enumerate()
            .for_each(|(j, ((x, f), v))| {
                self.scene_unchecked(split, range.start + j)
                    .render_into(x, f, v);
            });
        let t = |shape: &[usize], data| {
            Tensor::from_shape_vec(IxDyn(shape), data).expect("sized for the shape")
        };
        Ok(FlowDataset {
            inputs: t(&[n, 2, h, w], inputs),
            flows: t(&[n, 2, h, w], flows),
            visible: t(&[n, 1, h, w], visible),
        })
    }
}

/// The first `n` samples of `split`, rendered (see [`FlyingShapesConfig::generate`]).
///
/// ```
/// use slimnet_core::data::flow::{flying_shapes, FlowSplit, FlyingShapesConfig};
/// let test = flying_shapes(2, FlowSplit::Test, &FlyingShapesConfig::default())?;
/// assert_eq!(test.len(), 2);
/// assert!(test.mean_flow_magnitude() > 0.5);
/// # Ok::<(), slimnet_core::Error>(())
/// ```
///
/// # Errors
/// As [`FlyingShapesConfig::generate`].
pub fn flying_shapes(n: usize, split: FlowSplit, cfg: &FlyingShapesConfig) -> Result<FlowDataset> {
    cfg.generate(split, 0..n)
}

/// Rendered frame pairs with their exact flow.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FlowDataset {
    /// `[N, 2, H, W]`: frame 1 and frame 2 as two channels, intensities in `[0, 1]`.
    pub inputs: Tensor,
    /// `[N, 2, H, W]`: the flow at each pixel of frame 1, in pixels: channel 0 the horizontal
    /// displacement `u` (towards larger column indices), channel 1 the vertical `v` (towards
    /// larger row indices). The content at column `x`, row `y` of frame 1 is at `(x + u, y + v)`
    /// in frame 2 (pixel centres at integer coordinates).
    pub flows: Tensor,
    /// `[N, 1, H, W]`: 1 where the surface seen at this pixel of frame 1 is still the topmost
    /// one at its moved position in frame 2 and that position lies within the frame (pixel
    /// centres span `[0, W - 1] x [0, H - 1]`); 0 where it is occluded or leaves the image.
    pub visible: Tensor,
}

impl FlowDataset {
    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.inputs.shape()[0]
    }

    /// Whether there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The pairs at `indices` and their flows, as one batch each.
    ///
    /// # Errors
    /// An index out of range.
    pub fn batch(&self, indices: &[usize]) -> Result<(Tensor, Tensor)> {
        if let Some(&i) = indices.iter().find(|&&i| i >= self.len()) {
            return Err(Error::Data {
                path: "flying shapes".into(),
                reason: format!("pair {i} asked of {} pairs", self.len()),
            });
        }
        Ok((
            self.inputs.select(Axis(0), indices),
            self.flows.select(Axis(0), indices),
        ))
    }

    /// The mean length of the flow vectors over all pixels: the end-point error of a model
    /// that predicts no motion, the baseline any flow network must beat. 0 when empty.
    pub fn mean_flow_magnitude(&self) -> f32 {
        let (n, h, w) = (self.len(), self.flows.shape()[2], self.flows.shape()[3]);
        if n * h * w == 0 {
            return 0.0;
        }
        let u = self.flows.index_axis(Axis(1), 0);
        let v = self.flows.index_axis(Axis(1), 1);
        let sum: f64 = u
            .iter()
            .zip(v.iter())
            .map(|(&a, &b)| f64::from(a).hypot(f64::from(b)))
            .sum();
        (sum / (n * h * w) as f64) as f32
    }
}
