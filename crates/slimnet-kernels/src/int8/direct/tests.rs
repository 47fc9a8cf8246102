//! The unfolding and packing through the padded copy against the plain im2col and `pack_a`.

use super::*;

/// The unfolding from the padded copy is the plain im2col, for padding, dilation, rows
/// shorter than eight bytes and ragged sizes.
#[test]
fn unfold_from_the_padded_copy_is_im2col() {
    for g in [
        ConvGeometry::new(1, 3, 7, 9, 1, 3, 3).with_padding(1, 1),
        ConvGeometry::new(1, 1, 28, 28, 1, 5, 5),
        ConvGeometry::new(1, 2, 6, 11, 1, 2, 3)
            .with_padding(2, 0)
            .with_dilation(2, 3),
        ConvGeometry::new(1, 5, 1, 1, 1, 1, 1).with_padding(1, 1),
        ConvGeometry::new(1, 2, 30, 30, 1, 7, 7).with_padding(3, 1),
        ConvGeometry::new(1, 2, 20, 21, 1, 3, 5).with_dilation(2, 1),
    ] {
        let x: Vec<u8> = (0..g.input_len()).map(|i| (i * 7 % 251) as u8).collect();
        let pd = Padded::new(&g);
        let mut xp = vec![0u8; pd.len + WINDOW_SLACK];
        pd.fill(&g, &x, 9, &mut xp);
        let kk = g.in_channels * g.kernel_h * g.kernel_w;
        let mut want = vec![0u8; kk * g.out_h() * g.out_w()];
        crate::int8::ops::im2col_u8(&g, &x, 9, &mut want);
        for isa in Isa::all_supported() {
            let mut col = Vec::new();
            pd.unfold(isa, &g, &xp, 3, &mut col);
            assert_eq!(&col[..want.len()], &want[..], "{isa:?} {g:?}");
        }
        let mut col = vec![0u8; want.len()];
        pd.unfold_portable(&g, &xp, &mut col);
        assert_eq!(col, want, "portable {g:?}");
    }
}

/// Every packer (portable, AVX2, AVX-512, and VBMI straight from the padded copy) gives
/// the bytes of `pack_a` over the plain im2col, zero padding included.
#[test]
fn packers_agree_with_pack_a() {
    for g in [
        ConvGeometry::new(1, 1, 28, 28, 1, 5, 5),
        ConvGeometry::new(1, 10, 12, 12, 1, 5, 5),
        ConvGeometry::new(1, 3, 9, 13, 1, 3, 3).with_padding(1, 1),
        ConvGeometry::new(1, 2, 30, 29, 1, 7, 2)
            .with_padding(3, 0)
            .with_dilation(1, 2),
        ConvGeometry::new(1, 7, 5, 5, 1, 3, 3),
        ConvGeometry::new(1, 1, 3, 40, 1, 2, 3),
    ] {
        let x: Vec<u8> = (0..g.input_len()).map(|i| (i * 13 % 253) as u8).collect();
        let (k, n) = (
            g.in_channels * g.kernel_h * g.kernel_w,
            g.out_h() * g.out_w(),
        );
        let mut col = vec![0u8; k * n];
        crate::int8::ops::im2col_u8(&g, &x, 5, &mut col);
        let view = crate::int8::gemm::U8View {
            data: &col,
            k,
            n,
            rs: n,
            cs: 1,
        };
        let mut want = Vec::new();
        let npad = crate::int8::gemm::pack_a(&view, &mut want);
        let len = k.div_ceil(4) * 4 * npad;
        for isa in [Isa::Scalar, Isa::Avx2, Isa::Avx512] {
            if !isa.is_supported() {
                continue;
            }
            let mut got = vec![0xAAu8; 3];
            assert_eq!(pack(isa, &col, k, n, &mut got), npad);
            assert_eq!(&got[..len], &want[..len], "{isa:?} {g:?}");
        }
        #[cfg(target_arch = "x86_64")]
        {
            let pd = Padded::new(&g);
            if pd.vbmi(Isa::detected(), &g) {
                let mut xp = vec![0u8; pd.len + WINDOW_SLACK];
                pd.fill(&g, &x, 5, &mut xp);
                let mut got = vec![0xAAu8; len];
                // SAFETY: VBMI is available and the windows fit (checked by `vbmi`); `xp`
                // has the slack after the image, `got` holds the panel.
                unsafe {
                    let (xp, o) = (xp.as_ptr(), got.as_mut_ptr());
                    let offs = pd.offsets(&g);
                    window_x86::pack_vbmi(xp, &offs, n, g.out_w(), pd.wp, npad, o)
                };
                assert_eq!(got, &want[..len], "vbmi {g:?}");
            }
        }
    }
}
