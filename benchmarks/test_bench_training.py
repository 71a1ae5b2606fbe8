"""pytest-benchmark timings of one MRE-PINN training iteration: reference vs default path.

Not part of the test suite (``testpaths = ["tests"]``); run it explicitly::

    pytest benchmarks/ --benchmark-group-by=group --benchmark-columns=min,median,max

The network is the one of ``mrepinn benchmark`` (5 dense sine layers × 128, 1024 points,
``hetero``, 3 complex components, 3D coordinates); the box is coarser than the README's,
which does not change the time per iteration (a batch is 1024 points either way). Without
pytest-benchmark installed the module is skipped. Each round is one ``timed_step``: a batch
drawn and ``MREPINNModel.step(timed=True)``, the step ``train`` runs. ``mrepinn benchmark``
interleaves the paths and adds memory, time to accuracy and the thread policy; this file
suits comparing commits with ``--benchmark-autosave`` / ``--benchmark-compare``.
"""

from __future__ import annotations

import pytest

pytest.importorskip("pytest_benchmark")
torch = pytest.importorskip("torch")

from napari_mrepinn import benchmark as bm  # noqa: E402
from napari_mrepinn.benchmark import spec  # noqa: E402

CONFIG = bm.BenchmarkConfig.full()
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(scope="module")
def example():
    return spec.four_target_box(bm.BenchmarkConfig(shape=(40, 50, 4), spacing=2e-3))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    ("path", "w_pde"),
    [("reference", 1.0), ("default", 1.0), ("default", 0.0)],
    ids=["reference", "default", "default-warmup"],
)
def test_training_iteration(benchmark, example, device, path, w_pde):
    model = bm.build_timing_model(example, CONFIG, spec.ENGINE_OF_PATH[path], device)
    bm.timed_step(model, w_pde)  # allocator and kernel warm-up, untimed
    benchmark.group = f"training iteration ({device})"
    benchmark.extra_info.update(path=path, pde_weight=w_pde, n_points=CONFIG.n_points)
    benchmark.pedantic(bm.timed_step, args=(model, w_pde), rounds=5, iterations=1)


@pytest.mark.parametrize("device", DEVICES)
def test_same_batch_loss(example, device):
    """The paths being timed compute the same loss (to 1e-5 relative)."""
    assert bm.same_batch_check(example, CONFIG, device)["passed"]
