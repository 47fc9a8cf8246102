//! The shape vocabulary shared by every convolution kernel (dense, sparse, int8): the
//! [`ConvGeometry`] of a layer and the index ranges it implies.

use crate::error::{KernelError, Result};

/// Shapes and hyper-parameters of a 2-D convolution over an NCHW batch with OIHW weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeometry {
    /// Batch size N.
    pub batch: usize,
    /// Input channels C.
    pub in_channels: usize,
    /// Input height.
    pub in_h: usize,
    /// Input width.
    pub in_w: usize,
    /// Output channels O.
    pub out_channels: usize,
    /// Kernel height.
    pub kernel_h: usize,
    /// Kernel width.
    pub kernel_w: usize,
    /// Stride (rows, columns).
    pub stride: (usize, usize),
    /// Zero padding on each side (rows, columns).
    pub padding: (usize, usize),
    /// Dilation (rows, columns).
    pub dilation: (usize, usize),
    /// Groups: input and output channels are split into this many independent groups.
    pub groups: usize,
}

impl ConvGeometry {
    /// A convolution with stride 1, no padding, dilation 1 and one group.
    pub fn new(
        batch: usize,
        in_channels: usize,
        in_h: usize,
        in_w: usize,
        out_channels: usize,
        kernel_h: usize,
        kernel_w: usize,
    ) -> Self {
        Self {
            batch,
            in_channels,
            in_h,
            in_w,
            out_channels,
            kernel_h,
            kernel_w,
            stride: (1, 1),
            padding: (0, 0),
            dilation: (1, 1),
            groups: 1,
        }
    }

    /// Sets the stride.
    pub fn with_stride(mut self, sh: usize, sw: usize) -> Self {
        self.stride = (sh, sw);
        self
    }

    /// Sets the zero padding.
    pub fn with_padding(mut self, ph: usize, pw: usize) -> Self {
        self.padding = (ph, pw);
        self
    }

    /// Sets the dilation.
    pub fn with_dilation(mut self, dh: usize, dw: usize) -> Self {
        self.dilation = (dh, dw);
        self
    }

    /// Sets the number of groups.
    pub fn with_groups(mut self, groups: usize) -> Self {
        self.groups = groups;
        self
    }

    fn out_dim(size: usize, k: usize, s: usize, p: usize, d: usize) -> Option<usize> {
        let span = d.checked_mul(k.checked_sub(1)?)?.checked_add(1)?;
        let padded = size.checked_add(p.checked_mul(2)?)?;
        Some(padded.checked_sub(span)? / s + 1)
    }

    /// Checks that the geometry is consistent and yields a non-empty output.
    ///
    /// # Errors
    /// Zero sizes, strides or dilations; channels not divisible by `groups`; a kernel larger than
    /// the padded input; sizes whose products overflow.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &'static str, reason: String| Err(KernelError::Invalid { what, reason });
        if self.kernel_h == 0 || self.kernel_w == 0 {
            return bad(
                "kernel size",
                format!("{}x{}", self.kernel_h, self.kernel_w),
            );
        }
        if self.stride.0 == 0 || self.stride.1 == 0 {
            return bad("stride", format!("{:?}", self.stride));
        }
        if self.dilation.0 == 0 || self.dilation.1 == 0 {
            return bad("dilation", format!("{:?}", self.dilation));
        }
        if self.groups == 0
            || !self.in_channels.is_multiple_of(self.groups)
            || !self.out_channels.is_multiple_of(self.groups)
        {
            return bad(
                "groups",
                format!(
                    "{} groups do not divide {} input and {} output channels",
                    self.groups, self.in_channels, self.out_channels
                ),
            );
        }
        let oh = Self::out_dim(
            self.in_h,
            self.kernel_h,
            self.stride.0,
            self.padding.0,
            self.dilation.0,
        );
        let ow = Self::out_dim(
            self.in_w,
            self.kernel_w,
            self.stride.1,
            self.padding.1,
            self.dilation.1,
        );
        let (Some(oh), Some(ow)) = (oh, ow) else {
            return bad(
                "input size",
                format!(
                    "{}x{} input with padding {:?} is smaller than the {}x{} kernel (dilation {:?})",
                    self.in_h, self.in_w, self.padding, self.kernel_h, self.kernel_w, self.dilation
                ),
            );
        };
        let sizes = [
            [self.batch, self.in_channels, self.in_h, self.in_w],
            [self.batch, self.out_channels, oh, ow],
            [
                self.out_channels,
                self.in_channels,
                self.kernel_h,
                self.kernel_w,
            ],
            [
                self.in_channels,
                self.kernel_h * self.kernel_w.max(1),
                oh,
                ow,
            ],
        ];
        for s in sizes {
            if s.iter()
                .try_fold(1usize, |a, &b| a.checked_mul(b))
                .is_none_or(|v| v > isize::MAX as usize / 8)
            {
                return bad("sizes", format!("{s:?} overflows"));
            }
        }
        Ok(())
    }

    /// Output height (call [`validate`](Self::validate) first for a meaningful value).
    pub fn out_h(&self) -> usize {
        Self::out_dim(
            self.in_h,
            self.kernel_h,
            self.stride.0,
            self.padding.0,
            self.dilation.0,
        )
        .unwrap_or(0)
    }

    /// Output width.
    pub fn out_w(&self) -> usize {
        Self::out_dim(
            self.in_w,
            self.kernel_w,
            self.stride.1,
            self.padding.1,
            self.dilation.1,
        )
        .unwrap_or(0)
    }

    /// Elements of the input batch.
    pub fn input_len(&self) -> usize {
        self.batch * self.in_channels * self.in_h * self.in_w
    }

    /// Elements of the output batch.
    pub fn output_len(&self) -> usize {
        self.batch * self.out_channels * self.out_h() * self.out_w()
    }

    /// Elements of the OIHW weight (`O * I/groups * kh * kw`).
    pub fn weight_len(&self) -> usize {
        self.out_channels * (self.in_channels / self.groups.max(1)) * self.kernel_h * self.kernel_w
    }

    /// Multiply-accumulates of one forward pass.
    pub fn macs(&self) -> usize {
        self.output_len() * (self.in_channels / self.groups.max(1)) * self.kernel_h * self.kernel_w
    }

    pub(crate) fn is_pointwise(&self) -> bool {
        self.kernel_h == 1 && self.kernel_w == 1 && self.stride == (1, 1) && self.padding == (0, 0)
    }

    pub(crate) fn is_depthwise(&self) -> bool {
        self.groups == self.in_channels && self.groups == self.out_channels && self.groups > 1
    }

    pub(crate) fn single(&self) -> Self {
        Self { batch: 1, ..*self }
    }
}

/// Output-column range `[lo, hi)` whose input coordinate `o * stride + offset` lies in `[0, size)`.
#[inline]
pub(crate) fn valid_range(out: usize, stride: usize, offset: isize, size: usize) -> (usize, usize) {
    // smallest o with o*stride + offset >= 0
    let lo = if offset >= 0 {
        0
    } else {
        ((-offset) as usize).div_ceil(stride)
    };
    // largest o with o*stride + offset <= size-1
    let hi = if (size as isize) - offset <= 0 {
        0
    } else {
        (((size as isize - 1 - offset) as usize) / stride + 1).min(out)
    };
    (lo.min(hi), hi)
}
