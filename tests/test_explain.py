"""Grad-CAM for every registered classifier (shape, range, model state restored) and SHAP partition."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from spine_models.explain import gradcam, shap_partition
from spine_models.models import create_model, list_models


def _size(arch: str) -> int:
    return {"inception_v3": 80, "xception": 64}.get(arch, 32)


@pytest.mark.parametrize("arch", list_models("classify"))
def test_gradcam_every_arch_shape_range_and_state_restored(arch):
    torch.manual_seed(0)
    model = create_model(arch, task="classify", num_classes=2, in_chans=1)
    s = _size(arch)
    two_view = getattr(model, "two_view", False)
    x = (torch.rand(1, 1, s, s), torch.rand(1, 1, s, s)) if two_view else torch.rand(1, 1, s, s)
    # a state a trainer could leave: train mode, a frozen backbone part kept in eval, some params frozen
    model.train()
    params = list(model.parameters())
    for p in params[: len(params) // 2]:
        p.requires_grad_(False)
    some_bn = next((m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)), None)
    if some_bn is not None:
        some_bn.eval()
    modes = {n: m.training for n, m in model.named_modules()}
    grads = {n: p.requires_grad for n, p in model.named_parameters()}
    before = {k: v.clone() for k, v in model.state_dict().items()}

    heat = gradcam(model, x, target_class=1)

    assert heat.shape == (s, s) and heat.dtype == np.float32
    assert np.isfinite(heat).all() and heat.min() >= 0 and heat.max() <= 1
    assert {n: m.training for n, m in model.named_modules()} == modes
    assert {n: p.requires_grad for n, p in model.named_parameters()} == grads
    for k, v in model.state_dict().items():  # batch-norm running stats untouched (CAM runs in eval)
        assert torch.equal(v, before[k]), k
    assert not any(m._forward_hooks or m._backward_hooks for m in model.modules()), "CAM hooks left behind"


def test_gradcam_top_class_default_and_target_differ():
    torch.manual_seed(0)
    model = create_model("spinenet_tiny", task="classify", num_classes=3).eval()
    x = torch.rand(1, 1, 48, 48)
    a, b = gradcam(model, x), gradcam(model, x, target_class=2)
    assert a.shape == b.shape == (48, 48)


def test_shap_partition_budget_shape_and_progress():
    torch.manual_seed(0)
    model = create_model("spinenet_tiny", task="classify", num_classes=3).eval()

    def predict(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return torch.softmax(model(torch.from_numpy(batch).permute(0, 3, 1, 2)), 1).numpy()

    image = np.random.default_rng(0).random((32, 32, 1)).astype(np.float32)
    seen: list[tuple[int, int]] = []
    values = shap_partition(predict, image, max_evals=60, batch_size=20, progress_callback=lambda d, t: seen.append((d, t)))
    assert values.shape == (32, 32) and np.isfinite(values).all()
    assert seen and all(t == 60 for _, t in seen) and seen[-1][0] <= 60
    # attributions of one class sum to a difference of two probabilities: at most 1 in size
    assert abs(values.sum()) <= 1.0 + 1e-6
    top = int(predict(image[None])[0].argmax())
    gray2d = shap_partition(predict, image[..., 0], max_evals=40, class_index=top)
    assert gray2d.shape == (32, 32)


def test_shap_partition_rejects_tiny_budget():
    with pytest.raises(ValueError, match="max_evals"):
        shap_partition(lambda b: np.zeros((len(b), 2)), np.zeros((16, 16)), max_evals=1)


def _stock_gradcam(model, x, target_class: int) -> np.ndarray:
    """pytorch-grad-cam's own full run (gradients through every layer down to the input), as the reference."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from spine_models.explain.gradcam import _FixedOther
    from spine_models.models.classification import cam_target_layer

    model.eval()
    for p in model.parameters():
        p.requires_grad_(True)
    net, inp = (_FixedOther(model, x[1]), x[0]) if isinstance(x, tuple) else (model, x)
    with torch.no_grad():
        one_logit = net(inp).shape[-1] == 1
    target = (lambda out: (1.0 if target_class == 1 else -1.0) * out[..., 0]) if one_logit \
        else ClassifierOutputTarget(target_class)
    with GradCAM(model=net, target_layers=[cam_target_layer(model)]) as cam:
        return np.clip(np.nan_to_num(cam(input_tensor=inp.clone(), targets=[target])[0].astype(np.float32)), 0, 1)


@pytest.mark.parametrize("arch", list_models("classify"))
def test_gradcam_from_the_target_layer_equals_the_full_backward(arch):
    """The graph starting at the target layer (explain.gradcam) gives pytorch-grad-cam's map of the full backward."""
    torch.manual_seed(1)
    model = create_model(arch, task="classify", num_classes=2, in_chans=1).eval()
    shipped = arch in ("mobilenet_v2", "resnet18")  # the shipped classifiers' archs: 96 px gives a 3x3 map, not 1x1
    s = 96 if shipped else _size(arch)
    x = (torch.rand(1, 1, s, s), torch.rand(1, 1, s, s)) if getattr(model, "two_view", False) else torch.rand(1, 1, s, s)
    spread = []
    for k in (0, 1):
        ref = _stock_gradcam(model, x, k)
        got = gradcam(model, x, target_class=k)
        assert got.shape == ref.shape
        np.testing.assert_allclose(got, ref, atol=1e-5)
        spread.append(float(ref.max() - ref.min()))
    if shipped:  # a real map, not zeros both ways agree on
        assert max(spread) > 0.1
