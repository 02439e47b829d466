"""Classification registry: every arch builds, runs forward and one training step; weights loading rules."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from spine_models.errors import ModelNotFoundError, WeightsNotAvailableError
from spine_models.models import create_model, list_models
from spine_models.models.classification import cam_target_layer, get_classifier

ARCHS = list_models("classify")
STUDY_ARCHS = {"resnet18", "resnet50", "resnet101", "densenet121", "densenet169", "densenet201", "squeezenet1_1",
               "inception_v3", "xception", "efficientnet_b0", "efficientnet_b3", "vgg16", "vgg19", "mobilenet_v2",
               "twoview_resnet50_study", "twoview_resnet18", "spinenet_tiny"}


def _size(arch: str) -> int:
    return {"inception_v3": 80, "xception": 64}.get(arch, 32)


def test_every_study_arch_is_registered():
    assert STUDY_ARCHS <= set(ARCHS)


@pytest.mark.parametrize("arch", ARCHS)
def test_build_forward_and_one_training_step(arch: str):
    torch.manual_seed(0)
    n_cls = 2 if arch == "twoview_resnet50_study" else 3
    model = create_model(arch, task="classify", num_classes=n_cls, in_chans=1)
    s = _size(arch)
    two_view = getattr(model, "two_view", False)
    x = (torch.rand(2, 1, s, s), torch.rand(2, 1, s, s)) if two_view else torch.rand(2, 1, s, s)
    y = torch.tensor([0, 1])
    model.train()
    out = model(*x) if two_view else model(x)
    n_out = 1 if arch == "twoview_resnet50_study" else n_cls
    assert out.shape == (2, n_out)
    head = get_classifier(model)
    before = [p.detach().clone() for p in head.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = (torch.nn.functional.binary_cross_entropy_with_logits(out[:, 0], y.float()) if n_out == 1
            else torch.nn.functional.cross_entropy(out, y))
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(b, p) for b, p in zip(before, head.parameters())), "head did not change after a step"
    assert isinstance(cam_target_layer(model), torch.nn.Module)


def test_unknown_name_lists_valid_ones():
    with pytest.raises(ModelNotFoundError) as e:
        create_model("resnet5000", task="classify")
    assert "resnet50" in str(e.value) and "xception" in str(e.value)


@pytest.fixture
def hub_dir(tmp_path, monkeypatch):
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    yield tmp_path / "hub"
    torch.hub.set_dir(old)


@pytest.mark.parametrize("arch", ["resnet18", "efficientnet_b0", "xception"])
def test_imagenet_without_local_file_is_a_clear_error(arch, hub_dir):
    with pytest.raises(WeightsNotAvailableError) as e:
        create_model(arch, task="classify", num_classes=2, pretrained="imagenet")
    msg = str(e.value)
    assert "never downloaded" in msg and str(hub_dir / "checkpoints") in msg and "\n" not in msg


def test_imagenet_from_local_file_sums_rgb_into_gray(hub_dir):
    import torchvision

    ref = torchvision.models.resnet18(weights=None)
    (hub_dir / "checkpoints").mkdir(parents=True)
    url = torchvision.models.ResNet18_Weights.DEFAULT.url
    torch.save(ref.state_dict(), hub_dir / "checkpoints" / Path(url).name)
    gray = create_model("resnet18", task="classify", num_classes=2, in_chans=1, pretrained="imagenet")
    rgb = create_model("resnet18", task="classify", num_classes=2, in_chans=3, pretrained="imagenet")
    assert gray.conv1.weight.shape[1] == 1
    torch.testing.assert_close(gray.conv1.weight, ref.conv1.weight.sum(1, keepdim=True))
    torch.testing.assert_close(gray.layer3[0].conv1.weight, ref.layer3[0].conv1.weight)
    # a gray film as one channel == the same film repeated in three channels: same features
    gray.eval(), rgb.eval()
    x = torch.rand(1, 1, 64, 64)
    feats = lambda m, t: m.avgpool(m.layer4(m.layer3(m.layer2(m.layer1(m.maxpool(m.relu(m.bn1(m.conv1(t)))))))))  # noqa: E731
    with torch.no_grad():
        torch.testing.assert_close(feats(gray, x), feats(rgb, x.repeat(1, 3, 1, 1)), rtol=1e-4, atol=1e-5)
    assert gray.pretrained_report["loaded"] > 100


def test_transfer_from_earlier_run_loads_matching_tensors(tmp_path):
    from spine_models.models.cards import save_checkpoint_file

    torch.manual_seed(1)
    a = create_model("spinenet_tiny", task="classify", num_classes=4, in_chans=1)
    path = tmp_path / "model.pt"
    save_checkpoint_file(path, arch="spinenet_tiny", task="classify", state_dict=a.state_dict(), half=False)
    b = create_model("spinenet_tiny", task="classify", num_classes=2, in_chans=1, pretrained=str(path))
    rep = b.pretrained_report
    assert rep["loaded"] == rep["total"] - 2  # everything except the new head's weight and bias
    assert set(rep["skipped"]) == {"head.2.weight", "head.2.bias"}
    torch.testing.assert_close(b.features[2][0].weight, a.features[2][0].weight)
    with pytest.raises(WeightsNotAvailableError):
        create_model("spinenet_tiny", task="classify", pretrained=str(tmp_path / "missing.pt"))


@pytest.mark.parametrize("arch,timm_name", [("efficientnet_b0", "efficientnet_b0"), ("xception", "legacy_xception")])
def test_timm_imagenet_from_local_file(arch, timm_name, hub_dir):
    import timm

    ref = timm.create_model(timm_name, pretrained=False)
    (hub_dir / "checkpoints").mkdir(parents=True)
    torch.save(ref.state_dict(), hub_dir / "checkpoints" / f"timm-{timm_name}.pth")
    model = create_model(arch, task="classify", num_classes=2, in_chans=1, pretrained="imagenet")
    n_ref = len(ref.state_dict())
    assert model.pretrained_report["loaded"] >= n_ref - 2  # all but the 1000-class head
    conv = model.conv_stem if arch == "efficientnet_b0" else model.backbone.conv1
    ref_conv = ref.conv_stem if arch == "efficientnet_b0" else ref.conv1
    torch.testing.assert_close(conv.weight, ref_conv.weight.sum(1, keepdim=True))


@pytest.mark.parametrize("seg_arch,cls_arch,probe", [("unet_mobilenet_v2", "mobilenet_v2", "features.18.0.weight"),
                                                     ("unet_resnet18", "resnet18", "layer4.1.conv2.weight")])
def test_transfer_from_a_segmentation_unet_encoder(tmp_path, seg_arch, cls_arch, probe):
    """A U-Net run's encoder is a same-domain backbone: every backbone tensor loads, only the head is new."""
    from spine_models.models.cards import save_checkpoint_file

    torch.manual_seed(2)
    unet = create_model(seg_arch, task="segment", num_classes=5, in_chans=1)
    path = tmp_path / "model.pt"
    save_checkpoint_file(path, arch=seg_arch, task="segment", state_dict=unet.state_dict(), half=True)
    clf = create_model(cls_arch, task="classify", num_classes=3, in_chans=1, pretrained=str(path))
    rep = clf.pretrained_report
    head = {k for k in clf.state_dict() if k.startswith(("fc.", "classifier."))}
    assert rep["loaded"] == rep["total"] - len(head)
    torch.testing.assert_close(clf.state_dict()[probe], unet.state_dict()[f"encoder.{probe}"].half().float())


@pytest.mark.parametrize("view,modality,film_view,fits", [
    ("any", "CR", "", True), ("any", "DX", "lat", True), ("any", "MR", "", False),
    ("mri", "MR", "", True), ("mri", "CR", "", False),
    ("ap", "CR", "ap", True), ("ap", "CR", "lat", False), ("ap", "CR", "", True), ("lat", "MR", "", False)])
def test_card_fits_routes_films_and_mr_images(view, modality, film_view, fits):
    """An X-ray model for either view ("any", e.g. the three-class model) never runs on an MR image."""
    from types import SimpleNamespace

    from spine_models.engine.predictor import card_fits

    card = SimpleNamespace(view=view)
    assert card_fits(card, SimpleNamespace(modality=modality, view=film_view)) is fits
