//! The standard layers. Each has forward and backward; shapes are documented on `forward`.
//!
//! Besides the classifier layers there are those of image-to-image networks (style transfer,
//! optical flow, segmentation decoders): [`ConvTranspose2d`] (learned upsampling),
//! [`Resize2d`] (nearest and bilinear resizing), [`InstanceNorm2d`] and [`Pad`] (reflection,
//! edge, wrap or constant padding).

mod activation;
mod batchnorm;
mod conv;
mod conv_transpose;
mod dropout;
mod flatten;
mod instance_norm;
mod linear;
mod pad;
mod pool;
mod resize;
mod softmax;

pub use activation::{Activation, ActivationKind};
pub use batchnorm::{BatchNorm2d, BatchNormConfig};
pub use conv::{Conv2d, Conv2dConfig};
pub use conv_transpose::{ConvTranspose2d, ConvTransposeConfig};
pub use dropout::{Dropout, DropoutConfig};
pub use flatten::Flatten;
pub use instance_norm::{InstanceNorm2d, InstanceNormConfig};
pub use linear::{Linear, LinearConfig};
pub use pad::{Pad, PadMode};
pub use pool::{AvgPool2d, GlobalAvgPool, MaxPool2d, PoolConfig};
pub use resize::{CoordMode, NearestMode, Resize2d, ResizeMode, ResizeTarget};
pub(crate) use softmax::log_softmax_axis1;

/// Model-file loaders of the layers whose configurations are read field by field.
pub(crate) mod loaders {
    pub(crate) use super::conv_transpose::load as conv_transpose;
    pub(crate) use super::pad::load as pad;
    pub(crate) use super::resize::load as resize;
}
pub use softmax::Softmax;
