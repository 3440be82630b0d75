//! Complex values: parts, pairs and the interleaved layout complex storage
//! shares with PyTorch (real, imaginary, real, imaginary, ...).

use crate::dtype::DType;
use crate::ir::*;
use crate::{GraphError, Result};

impl Graph {
    pub fn real_part(&mut self, z: ValueId) -> Result<ValueId> {
        if !self.dtype(z).is_complex() {
            return Ok(z);
        }
        self.unary(UnaryKind::Real, z)
    }

    /// The imaginary part; zeros for a real value.
    pub fn imag_part(&mut self, z: ValueId) -> Result<ValueId> {
        let d = self.dtype(z);
        if !d.is_complex() {
            return Ok(self.full_like(z, 0.0, d));
        }
        self.unary(UnaryKind::Imag, z)
    }

    /// `re + i im` of two real values of one shape (converted to `re`'s float type).
    pub fn make_complex(&mut self, re: ValueId, im: ValueId) -> Result<ValueId> {
        let d = self.dtype(re);
        let d = if d == DType::F64 { d } else { DType::F32 };
        let (re, im) = (self.convert(re, d), self.convert(im, d));
        self.binary(BinaryKind::Complex, re, im)
    }

    /// Complex conjugate (the identity on real values).
    pub fn conj(&mut self, z: ValueId) -> Result<ValueId> {
        if !self.dtype(z).is_complex() {
            return Ok(z);
        }
        let re = self.real_part(z)?;
        let im = self.imag_part(z)?;
        let neg = self.unary(UnaryKind::Neg, im)?;
        self.make_complex(re, neg)
    }

    /// A flat complex value `[n]` as its parts interleaved, `[2n]` of the part dtype.
    pub fn complex_to_interleaved(&mut self, flat: ValueId) -> Result<ValueId> {
        let n = self.shape(flat)[0];
        let re = self.real_part(flat)?;
        let im = self.imag_part(flat)?;
        let re = self.reshape(re, &[n, 1])?;
        let im = self.reshape(im, &[n, 1])?;
        let pairs = self.concatenate(&[re, im], 1)?;
        self.reshape(pairs, &[2 * n])
    }

    /// Interleaved parts `[2n]` (of `dtype`'s part dtype) as flat complex `[n]`.
    pub fn interleaved_to_complex(&mut self, flat: ValueId, dtype: DType) -> Result<ValueId> {
        let len = self.shape(flat)[0];
        if len % 2 != 0 {
            return Err(GraphError::Invalid(format!(
                "cannot view {len} elements of {} as {dtype}: the size is odd",
                self.dtype(flat)
            )));
        }
        let pairs = self.reshape(flat, &[len / 2, 2])?;
        let re = self.slice_dim(pairs, 1, 0, 1)?;
        let im = self.slice_dim(pairs, 1, 1, 2)?;
        let re = self.reshape(re, &[len / 2])?;
        let im = self.reshape(im, &[len / 2])?;
        self.binary(BinaryKind::Complex, re, im)
    }
}

impl Graph {
    /// `stablehlo.fft` over the trailing `lengths.len()` (1 to 3) dims of `x`.
    pub fn fft(&mut self, x: ValueId, kind: FftKind, lengths: &[i64]) -> Result<ValueId> {
        let t = self.ty(x).clone();
        let (r, k) = (t.rank(), lengths.len());
        let bad = |m: String| Err(GraphError::Invalid(format!("fft: {m}")));
        if k == 0 || k > 3 || k > r || lengths.iter().any(|&n| n < 1) {
            return bad(format!("lengths {lengths:?} do not fit {t}"));
        }
        let trailing = &t.shape[r - k..];
        let last = lengths[k - 1];
        let out = match kind {
            FftKind::Fft | FftKind::Ifft => {
                if !t.dtype.is_complex() || trailing != lengths {
                    return bad(format!(
                        "a complex input with trailing dims {lengths:?}, got {t}"
                    ));
                }
                t.clone()
            }
            FftKind::Rfft => {
                if !matches!(t.dtype, DType::F32 | DType::F64) || trailing != lengths {
                    return bad(format!(
                        "a real input with trailing dims {lengths:?}, got {t}"
                    ));
                }
                let mut s = t.shape.clone();
                s[r - 1] = last / 2 + 1;
                ValueType::new(t.dtype.to_complex(), &s)
            }
            FftKind::Irfft => {
                let half = last / 2 + 1;
                if !t.dtype.is_complex()
                    || trailing[..k - 1] != lengths[..k - 1]
                    || trailing[k - 1] != half
                {
                    return bad(format!(
                        "a complex input with trailing dims {:?} and {half}, got {t}",
                        &lengths[..k - 1]
                    ));
                }
                let mut s = t.shape.clone();
                s[r - 1] = last;
                ValueType::new(t.dtype.real(), &s)
            }
        };
        Ok(self.push1(
            Op::Fft {
                kind,
                lengths: lengths.to_vec(),
            },
            vec![x],
            out,
        ))
    }
}
