//! Complex dtypes in the graph IR: promotion, constants, parts and the FFT's types.

use tpu_graph::emit::literal;
use tpu_graph::{ConstVal, DType, FftKind, Graph, ValueType};

#[test]
fn promotion_follows_pytorch() {
    assert_eq!(DType::promote(DType::C64, DType::F64), DType::C128);
    assert_eq!(DType::promote(DType::I64, DType::C64), DType::C64);
    assert_eq!(DType::promote(DType::BF16, DType::C64), DType::C64);
    assert!(!DType::can_cast(DType::C64, DType::F32));
    assert!(DType::can_cast(DType::F32, DType::C64));
    assert_eq!(DType::from_torch(9), Some(DType::C64));
    assert_eq!(DType::C128.to_torch(), 10);
    assert_eq!(DType::C128.size(), 16);
}

#[test]
fn complex_constant_literal_has_both_parts() {
    let s = literal(ConstVal::complex(1.0, -2.0), DType::C64);
    assert_eq!(s, "(0x3F800000, 0xC0000000)");
    // A real constant in a complex dtype has a zero imaginary part.
    assert_eq!(
        literal(ConstVal::float(0.5), DType::C128),
        "(0x3FE0000000000000, 0x0000000000000000)"
    );
}

#[test]
fn parts_interleave_as_pytorch_stores_them() {
    let mut g = Graph::default();
    let z = g.parameter(ValueType::new(DType::C64, &[3]));
    let flat = g.complex_to_interleaved(z).unwrap();
    assert_eq!(g.ty(flat), &ValueType::new(DType::F32, &[6]));
    let back = g.interleaved_to_complex(flat, DType::C64).unwrap();
    assert_eq!(g.ty(back), &ValueType::new(DType::C64, &[3]));
    let re = g.real_part(back).unwrap();
    assert_eq!(g.dtype(re), DType::F32);
    let odd = g.parameter(ValueType::new(DType::F32, &[5]));
    assert!(g.interleaved_to_complex(odd, DType::C64).is_err());
}

#[test]
fn fft_types() {
    let mut g = Graph::default();
    let x = g.parameter(ValueType::new(DType::F32, &[2, 8]));
    let half = g.fft(x, FftKind::Rfft, &[8]).unwrap();
    assert_eq!(g.ty(half), &ValueType::new(DType::C64, &[2, 5]));
    let back = g.fft(half, FftKind::Irfft, &[8]).unwrap();
    assert_eq!(g.ty(back), &ValueType::new(DType::F32, &[2, 8]));
    assert!(
        g.fft(x, FftKind::Fft, &[8]).is_err(),
        "FFT needs a complex input"
    );
    assert!(
        g.fft(half, FftKind::Irfft, &[6]).is_err(),
        "6 needs 4 half-spectrum elements"
    );
    let lt = g.compare(tpu_graph::CmpDir::Lt, half, half);
    assert!(lt.is_err(), "complex values have no order");
}
