//! Every registered rule name is an ATen overload (`name` or `name.overload`)
//! of the installed PyTorch; the fixture was generated with
//! `torch._C._jit_get_all_schemas()`. Our own ops (`torch_tpu::…`, defined
//! by the Python package) are the exception.

#[test]
fn registered_names_are_aten_overloads() {
    let known: std::collections::HashSet<&str> = include_str!("fixtures/aten_overloads.txt")
        .lines()
        .collect();
    let missing: Vec<&str> = tpu_lower::Registry::global()
        .names()
        .into_iter()
        .filter(|n| !known.contains(n) && !n.starts_with("torch_tpu::"))
        .collect();
    assert!(missing.is_empty(), "not ATen overloads: {missing:?}");
}
