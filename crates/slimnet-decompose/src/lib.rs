//! slimnet-decompose: low-rank approximation of convolution and fully-connected weights.
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

pub use error::{Error, Result};
