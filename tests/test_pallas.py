"""torch_tpu.pallas: JAX functions and Pallas kernels on tpu tensors, against torch on CPU."""

from __future__ import annotations

import pytest
import torch

from helpers import TPU, assert_same, run_python

jax = pytest.importorskip("jax")  # a test dependency ('.[test]' installs it)
jnp = jax.numpy

from torch_tpu import pallas  # noqa: E402


def test_values_gradients_and_several_outputs(mode: str) -> None:
    @pallas.custom_jax_kernel
    def sin_mul(x, y):
        return jnp.sin(x) * y, x + 1

    x = torch.randn(3, 4)
    y = torch.randn(3, 4)
    xd = x.to(TPU).requires_grad_()
    xc = x.clone().requires_grad_()
    a, b = sin_mul(xd, y.to(TPU))
    assert_same(a, torch.sin(xc) * y, "jax kernel output 0")
    assert_same(b, xc + 1, "jax kernel output 1")
    (a.sum() + (b * b).sum()).backward()
    ((torch.sin(xc) * y).sum() + ((xc + 1) ** 2).sum()).backward()
    assert_same(xd.grad, xc.grad, "gradient through jax.vjp")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.int32, torch.int64])
def test_dtypes_and_static_arguments(dtype: torch.dtype) -> None:
    scale = pallas.custom_jax_kernel(lambda x, k: x * k + 1, static_argnums=(1,))
    x = torch.arange(6).reshape(2, 3).to(dtype)
    for k in (2, 3):
        out = scale(x.to(TPU), k)
        assert out.dtype == dtype
        assert_same(out, x * k + 1, f"static argument {k}")


def test_pallas_kernel_with_grid_and_blockspecs() -> None:
    from jax.experimental import pallas as pl

    def add_kernel(x_ref, y_ref, o_ref):
        o_ref[...] = x_ref[...] * 2 + y_ref[...]

    @pallas.custom_jax_kernel
    def fused_add(x, y):
        spec = pl.BlockSpec((4,), lambda i: (i,))
        return pl.pallas_call(
            add_kernel,
            out_shape=jax.ShapeDtypeStruct(x.shape, x.dtype),
            grid=(x.shape[0] // 4,),
            in_specs=[spec, spec],
            out_specs=spec,
            interpret=True,
        )(x, y)

    x, y = torch.randn(16), torch.randn(16)
    assert_same(fused_add(x.to(TPU), y.to(TPU)), x * 2 + y, "Pallas kernel (interpret mode)")


def test_jax_op_custom_op_autograd_and_compile() -> None:
    def softplus_scaled(x: jax.Array, beta: float) -> jax.Array:
        return jnp.log1p(jnp.exp(beta * x)) / beta

    op = pallas.jax_op("torch_tpu_test::softplus_scaled", softplus_scaled)
    x = torch.randn(5)
    xd = x.to(TPU).requires_grad_()
    xc = x.clone().requires_grad_()
    out = op(xd, 2.0)
    ref = torch.nn.functional.softplus(xc, beta=2.0)
    assert_same(out, ref, "jax_op forward")
    out.sum().backward()
    ref.sum().backward()
    assert_same(xd.grad, xc.grad, "jax_op gradient")

    torch._dynamo.reset()
    compiled = torch.compile(lambda t: op(t.sin(), 2.0).cos(), backend="tpu", fullgraph=True)
    t = torch.randn(6)
    assert_same(compiled(t.to(TPU)), torch.nn.functional.softplus(t.sin(), beta=2.0).cos(), "jax_op in a graph")

    @op.register_fake
    def _(x, beta):
        return torch.empty_like(x)

    assert_same(op(x.to(TPU), 1.0), torch.nn.functional.softplus(x), "after register_fake")


def test_input_output_aliases_update_a_cache_in_place() -> None:
    def write_row(cache, row, pos):
        return cache.at[pos].set(row)

    update = pallas.custom_jax_kernel(write_row, static_argnums=(2,), input_output_aliases={0: 0}, donate_argnums=[0])
    cache = torch.zeros(4, 3, device=TPU)
    storage = cache.untyped_storage().data_ptr()
    update(cache, torch.ones(3, device=TPU), 2)
    want = torch.zeros(4, 3)
    want[2] = 1
    assert_same(cache, want, "KV-cache row written through input_output_aliases")
    assert cache.untyped_storage().data_ptr() == storage


def test_import_error_names_the_extra() -> None:
    r = run_python(
        "import sys; sys.modules['jax'] = None\n"
        "import torch, torch_tpu\nfrom torch_tpu import pallas\n"
        "try:\n    pallas.custom_jax_kernel(lambda x: x)\nexcept ImportError as e:\n    print(e)\n"
    )
    assert r.returncode == 0, r.stderr
    assert "torch-tpu[jax]" in r.stdout


def test_jax_op_with_aliases_mutates_its_input() -> None:
    def write_row(cache: jax.Array, row: jax.Array) -> jax.Array:
        return cache.at[1].set(row)

    op = pallas.jax_op("torch_tpu_test::write_row", write_row, input_output_aliases={0: 0})
    cache = torch.zeros(3, 2, device=TPU)
    op(cache, torch.ones(2, device=TPU))
    want = torch.zeros(3, 2)
    want[1] = 1
    assert_same(cache, want, "jax_op input_output_aliases")


def test_gradient_follows_a_changing_scalar_argument() -> None:
    scale = pallas.custom_jax_kernel(lambda x, k: x * k)
    for k in (2.0, 5.0):
        x = torch.ones(3, device=TPU, requires_grad=True)
        scale(x, k).sum().backward()
        assert_same(x.grad, torch.full((3,), k), f"gradient with k={k}")


def test_kernel_fuses_with_the_ops_around_it() -> None:
    import torch_tpu

    @pallas.custom_jax_kernel
    def gelu_tanh(x):
        return jax.nn.gelu(x, approximate=True)

    x = torch.randn(8, 16)
    with torch_tpu.eager_mode("fused"):
        xd = x.to(TPU)
        torch_tpu.sync()
        before = torch_tpu.metrics()
        y = (gelu_tanh(xd * 2) + 1).sum(-1)  # ops -> kernel -> ops
        got = y.cpu()
        after = torch_tpu.metrics()
    ref = (torch.nn.functional.gelu(x * 2, approximate="tanh") + 1).sum(-1)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    # One program for all of it, and only the result crossed to the host.
    assert after["executions"] - before["executions"] == 1
    assert after["bytes_to_host"] - before["bytes_to_host"] == got.numel() * 4


def test_aliased_update_is_donated_not_copied(tmp_path) -> None:
    code = (
        "import torch, torch_tpu, jax\n"
        "from torch_tpu import pallas\n"
        "upd = pallas.custom_jax_kernel(lambda c, r: c.at[1].set(r), input_output_aliases={0: 0})\n"
        "cache = torch.zeros(64, 8, device='tpu')\n"
        "torch_tpu.sync()\n"
        "upd(cache, torch.ones(8, device='tpu'))\n"
        "print(cache.sum().item())\n"
    )
    r = run_python(code, env={"TORCH_TPU_DUMP_DIR": str(tmp_path), "TORCH_TPU_EAGER_MODE": "strict"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "8.0"
    dumps = [p.read_text() for p in tmp_path.rglob("*") if p.is_file() and "func.call" in p.read_text()]
    assert dumps, "no dumped program calls the kernel"
    # The cache's buffer is donated to the call's result: XLA updates it in place.
    assert any("tf.aliasing_output" in d for d in dumps), dumps[0][:2000]


def test_pallas_kernel_written_for_tpu_runs_off_tpu() -> None:
    """A kernel without ``interpret=True``, built inside the function or before the call, lowers in
    interpret mode on a plugin that is not a TPU's (on a TPU it stays a Mosaic kernel)."""
    from jax.experimental import pallas as pl

    def kernel(x_ref, o_ref):
        o_ref[...] = x_ref[...] * 3

    spec = pl.BlockSpec((8,), lambda i: (i,))
    prebuilt = pl.pallas_call(
        kernel, out_shape=jax.ShapeDtypeStruct((32,), jnp.float32), grid=(4,), in_specs=[spec], out_specs=spec
    )
    x = torch.randn(32)
    assert_same(pallas.custom_jax_kernel(prebuilt)(x.to(TPU)), x * 3, "Pallas kernel built before the call")

    @pallas.custom_jax_kernel
    def inline(x):
        return pl.pallas_call(kernel, out_shape=jax.ShapeDtypeStruct(x.shape, x.dtype))(x)

    assert_same(inline(x.to(TPU)), x * 3, "Pallas kernel built in the call")


def test_torch_tpu_bridge_names() -> None:
    """TorchTPU's internal bridge as libraries (Helion) use it: constructor, caches, direct calls."""
    from torch_tpu._internal.pallas import tpu_torch_pallas
    from torch_tpu._internal.pallas.pallas import (
        JaxCallable,
        _get_kernel_invocation_key,
        get_default_pallas_mesh,
        jax_placeholder,
    )
    from torch_tpu._internal.utils.hardware import get_tpu_device_name

    assert get_tpu_device_name().startswith("TPU")
    assert get_default_pallas_mesh().devices.size == 1
    spec = jax_placeholder(torch.zeros(2, 3, dtype=torch.bfloat16))
    assert spec.shape == (2, 3) and spec.dtype == jnp.bfloat16

    kernel = JaxCallable(name="mul_add", jit_fn=jax.jit(lambda x, y: (x * y, x + y)), trace_key="mul_add_test")
    x, y = torch.randn(4), torch.randn(4)
    xd, yd = x.to(TPU), y.to(TPU)
    a, b = kernel(xd, yd)
    assert_same(a, x * y, "JaxCallable output 0")
    assert_same(b, x + y, "JaxCallable output 1")

    key = _get_kernel_invocation_key(kernel.trace_key, (xd, yd), {}, kernel.static_argnums)
    assert key == f"mul_add_test;{xd.shape}x{xd.dtype},{yd.shape}x{yd.dtype};"
    output_shapes, tree = kernel.output_shapes[key]
    fingerprint = kernel.kernel_key_to_mlir_fingerprint[key]
    assert tpu_torch_pallas.lookup_custom_kernel("mul_add", fingerprint)
    results = tpu_torch_pallas.call_custom_kernel(
        "mul_add", fingerprint, inputs=[xd, yd], output_shapes=output_shapes, donate_argnums=(), device_assignment=[]
    )
    a, b = tree.unflatten(results)
    assert_same(a, x * y, "call_custom_kernel output 0")
    assert_same(b, x + y, "call_custom_kernel output 1")

    # A module registered by its text, as TorchTPU's runtime takes one.
    lowered = jax.jit(lambda x: x - 1).lower(jax.ShapeDtypeStruct((4,), jnp.float32))
    tpu_torch_pallas.register_custom_kernel("sub_one", "k", lowered.as_text(debug_info=False))
    (out,) = tpu_torch_pallas.call_custom_kernel("sub_one", "k", inputs=[xd], output_shapes=[((4,), torch.float32)])
    assert_same(out, x - 1, "registered module")

    # A portable artifact, as jax.export serializes it.
    exp = jax.export.export(jax.jit(lambda x: x * 2 + 1), platforms=["cpu"])(jax.ShapeDtypeStruct((4,), jnp.float32))
    tpu_torch_pallas.register_custom_kernel("mul_two_add_one", "k", exp.mlir_module_serialized)
    (out,) = tpu_torch_pallas.call_custom_kernel("mul_two_add_one", "k", inputs=[xd], output_shapes=[torch.empty(4)])
    assert_same(out, x * 2 + 1, "registered portable artifact")


def test_gradient_of_a_lookup_skips_its_integer_indices() -> None:
    # An embedding-style kernel: JAX's cotangent for the int64 indices is
    # float0, which has no torch dtype; the indices get no gradient.
    lookup = pallas.custom_jax_kernel(lambda table, idx: table[idx] * 2.0)
    table = torch.randn(5, 3)
    idx = torch.tensor([0, 2, 2, 4])
    on_tpu = table.to(TPU).requires_grad_()
    lookup(on_tpu, idx.to(TPU)).square().sum().backward()
    on_cpu = table.clone().requires_grad_()
    (on_cpu[idx] * 2.0).square().sum().backward()
    torch.testing.assert_close(on_tpu.grad.cpu(), on_cpu.grad, rtol=1e-6, atol=1e-6)


def test_a_cpu_argument_is_named_in_the_error() -> None:
    scale = pallas.custom_jax_kernel(lambda x, w: x * w)
    with pytest.raises(RuntimeError, match=r"argument 1 on cpu"):
        scale(torch.randn(4, 8, device=TPU), torch.randn(8))


def test_jax_op_result_count_must_match_its_annotations() -> None:
    # The schema comes from the annotations: without a tuple annotation a
    # function returning two arrays would lose its second one.
    def split(x: jax.Array):  # no return annotation: the point of the test
        return x + 1, x * 2

    op = pallas.jax_op("torch_tpu_test::split_unannotated", split)
    with pytest.raises(TypeError, match=r"split_unannotated.*returned 2 arrays.*tuple"):
        op(torch.ones(3, device=TPU))

    def pair(x: jax.Array) -> tuple[jax.Array, jax.Array]:
        return x + 1, x * 2

    a, b = pallas.jax_op("torch_tpu_test::split_annotated", pair)(torch.arange(3.0, device=TPU))
    assert_same(a, torch.arange(3.0) + 1, "first result")
    assert_same(b, torch.arange(3.0) * 2, "second result")
