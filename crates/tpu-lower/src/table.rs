//! The table of every family's registrations: [`Registry::global`].
//!
//! Kept apart from [`crate::registry`] (the types rules are written against),
//! so families import the registry types without the registry importing them.

use crate::registry::Registry;
use std::sync::OnceLock;

/// Every family's `register`, in the order they are added.
const FAMILIES: &[fn(&mut Registry)] = &[
    crate::unary::register,
    crate::binary::register,
    crate::bits::register,
    crate::elementwise::register,
    crate::reduction::register,
    crate::linalg::register,
    crate::nn::register,
    crate::activation::register,
    crate::conv::register,
    crate::indexing::register,
    crate::shape::register,
    crate::random::register,
    crate::special::register,
    crate::nn_extra::register,
    crate::search::register,
    crate::resample::register,
    crate::scatter::register,
    crate::batch_norm::register,
    crate::solve::register,
    crate::lu::register,
    crate::qr::register,
    crate::order_stats::register,
    crate::pool::register,
    crate::unfold::register,
    crate::bessel::register,
    crate::external::register,
    crate::complex::register,
    crate::fft::register,
    crate::asserts::register,
    crate::svd::register,
    crate::eigh::register,
    crate::airy::register,
    crate::eig::register,
    crate::matfun::register,
    crate::householder::register,
    crate::lstsq::register,
    crate::ldl::register,
    crate::group_norm::register,
    crate::distance::register,
    crate::losses::register,
    crate::resample_extra::register,
    crate::attention::register,
    crate::embedding_bag::register,
    crate::grid_sample::register,
    crate::fractional_pool::register,
    crate::ctc::register,
    crate::polynomial::register,
    crate::distributions::register,
    crate::masked::register,
    crate::gamma_inc::register,
    crate::segment::register,
    crate::histogram::register,
];

impl Registry {
    /// The registry with every family's rules.
    pub fn global() -> &'static Registry {
        static REG: OnceLock<Registry> = OnceLock::new();
        REG.get_or_init(|| {
            let mut r = Registry::default();
            for register in FAMILIES {
                register(&mut r);
            }
            r
        })
    }
}
