//! The standard layers. Each has forward and backward; shapes are documented on `forward`.

mod activation;
mod batchnorm;
mod conv;
mod dropout;
mod flatten;
mod linear;
mod pool;
mod softmax;

pub use activation::{Activation, ActivationKind};
pub use batchnorm::{BatchNorm2d, BatchNormConfig};
pub use conv::{Conv2d, Conv2dConfig};
pub use dropout::{Dropout, DropoutConfig};
pub use flatten::Flatten;
pub use linear::{Linear, LinearConfig};
pub use pool::{AvgPool2d, GlobalAvgPool, MaxPool2d, PoolConfig};
pub(crate) use softmax::log_softmax_axis1;
pub use softmax::Softmax;
