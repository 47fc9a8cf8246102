//! slimnet-decompose: low-rank approximation of convolution and fully-connected weights, and
//! rewrites that turn the approximations into chains of smaller, faster layers.
//!
//! - [`svd`]: truncated and randomized SVD of `f32` matrices.
//! - [`cp`]: CP by alternating least squares (SVD or random start, normalisation, line search,
//!   random restarts, stopping on the relative error), and its Levenberg-Marquardt refinement.
//! - [`tucker`]: HOSVD, HOOI, partial Tucker and Tucker-2 of convolution kernels.
//! - [`rank`]: rank policies (fixed, energy, error budget, parameter or MAC budget) and EVBMF.
//! - [`rewrite`]: the [`LowRank`](rewrite::LowRank) rule for `slimnet_core::rewrite`, the
//!   [`decompose`](rewrite::decompose) pass with its per-layer report, and the speed check.
//!
//! Every decomposition result has `reconstruct()` and `n_params()`. Computations are
//! deterministic for a given seed and thread count (`slimnet_kernels::threads`).
//!
//! # Features
//! - default: all linear algebra on the pure-Rust [`faer`](https://docs.rs/faer) crate.
//! - `lapack`: SVD, QR, symmetric eigendecomposition and Cholesky run on LAPACK through
//!   `ndarray-linalg` with the system OpenBLAS (`apt-get install libopenblas-dev`); products stay
//!   on faer. The public API is the same. Set `OPENBLAS_NUM_THREADS` for reproducible timings.
//!
//! ```
//! use slimnet_core::{models, rewrite::Selector, tensor, Layer};
//! use slimnet_decompose::rank::RankPolicy;
//! use slimnet_decompose::rewrite::{decompose, ConvMethod, LowRank};
//! let mut model = models::lenet5(&mut tensor::rng(0))?;
//! let x = tensor::uniform(&[1, 1, 28, 28], 0.0, 1.0, &mut tensor::rng(1));
//! let before = model.forward(&x)?;
//! // full-rank spatial SVD of conv2 changes nothing but the structure
//! let rule = LowRank::new(ConvMethod::Spatial, RankPolicy::Fixed(100));
//! let report = decompose(&mut model, &[1, 1, 28, 28], &Selector::Paths(vec!["conv2".into()]), &rule)?;
//! assert_eq!(report.layers[0].ranks, vec![100]);
//! let after = model.forward(&x)?;
//! assert!(tensor::max_abs_diff(&before, &after) < 1e-4);
//! # Ok::<(), slimnet_decompose::DecomposeError>(())
//! ```
#![warn(missing_docs)]

pub mod cp;
mod dense;
mod error;
mod linalg;
pub mod rank;
pub mod rewrite;
pub mod svd;
pub mod tucker;
mod util;

pub use error::{DecomposeError, Result};
