"""Generic training loop: exact resume after an interrupted epoch, early stopping, clean callback stop."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from spine_models.engine import trainer as T
from spine_models.engine.callbacks import Callback


def _data(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(48, 6, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    return torch.utils.data.TensorDataset(x, y)


def _run(out_dir, epochs=4, resume=False, callbacks=None, patience=0, val_metric="val_acc", mode="max", val_override=None):
    T.seed_everything(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 2))
    ds = _data()
    gen = T.make_generator(0)
    loader = torch.utils.data.DataLoader(ds, batch_size=8, shuffle=True, generator=gen)
    val_loader = torch.utils.data.DataLoader(_data(1), batch_size=16)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    loss_fn = nn.CrossEntropyLoss()
    calls = {"n": 0}

    def validate(m):
        logits, y = T.predict_loader(m, val_loader, torch.device("cpu"))
        calls["n"] += 1
        acc = float((logits.argmax(1) == y).float().mean())
        if val_override is not None:
            acc = val_override(calls["n"])
        return {"val_loss": float(loss_fn(logits, y)), "val_acc": acc}

    res = T.fit(model, train_loader=loader, validate=validate, loss_fn=loss_fn, optimizer=opt, device=torch.device("cpu"),
                epochs=epochs, out_dir=out_dir, cfg={"lr": 1e-2}, seed=0, val_metric=val_metric, mode=mode,
                patience=patience, scheduler=sched, callbacks=callbacks, quiet=True, resume=resume, generator=gen)
    return model, res


class _StopMidEpoch(Callback):
    """Simulates a crash/cancel in the middle of epoch ``epoch`` (0-based)."""

    def __init__(self, epoch: int, step: int) -> None:
        self.epoch, self.step, self.current, self.stop = epoch, step, -1, False

    def on_epoch_start(self, epoch, epochs):
        self.current = epoch

    def on_batch_end(self, step, steps, loss):
        if self.current == self.epoch and step == self.step:
            self.stop = True

    def should_stop(self):
        return self.stop


def _strip(history):
    return [{k: v for k, v in row.items() if k != "time_s"} for row in history]


def test_resume_after_interrupted_epoch_matches_uninterrupted(tmp_path):
    full_model, full = _run(tmp_path / "full", epochs=4)
    stopper = _StopMidEpoch(epoch=2, step=3)
    _, part = _run(tmp_path / "cut", epochs=4, callbacks=stopper)
    assert part.stopped_by == "callback" and part.epochs_run == 2  # epochs 1-2 done, 3 interrupted
    ckpt = T.load_checkpoint(tmp_path / "cut" / "last.pt")
    assert ckpt["epoch"] == 1 and len(ckpt["history"]) == 2
    resumed_model, resumed = _run(tmp_path / "cut", epochs=4, resume=True)
    assert resumed.epochs_run == 4
    for a, b in zip(full_model.state_dict().values(), resumed_model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert _strip(full.history) == _strip(resumed.history)
    assert _strip(json.loads((tmp_path / "cut" / "history.json").read_text())) == _strip(full.history)
    assert full.best_epoch == resumed.best_epoch


def test_early_stopping_stops_after_patience(tmp_path):
    # the metric improves in epoch 1 and 2 only
    vals = {1: 0.5, 2: 0.7, 3: 0.6, 4: 0.7, 5: 0.65, 6: 0.9}
    _, res = _run(tmp_path, epochs=6, patience=2, val_override=lambda n: vals[n])
    assert res.stopped_by == "early_stopping"
    assert res.epochs_run == 4 and res.best_epoch == 2 and res.best_metric == pytest.approx(0.7)
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    for k, v in res.best_state.items():
        torch.testing.assert_close(best[k], v)


def test_checkpoint_holds_full_state_and_loads_weights_only(tmp_path):
    _run(tmp_path, epochs=2)
    ckpt = T.load_checkpoint(tmp_path / "last.pt")
    assert {"model", "optimizer", "scheduler", "epoch", "early_stopping", "rng", "cfg", "history"} <= set(ckpt)
    assert ckpt["scheduler"]["last_epoch"] == 2 and ckpt["cfg"] == {"lr": 1e-2}


def test_resume_without_checkpoint_is_a_user_error(tmp_path):
    from spine_models.errors import ConfigError

    with pytest.raises(ConfigError, match="no checkpoint"):
        _run(tmp_path, epochs=1, resume=True)


def test_early_stopping_state_roundtrip():
    es = T.EarlyStopping(patience=3, mode="min")
    assert es.step(1.0, 0) and not es.step(1.2, 1) and es.bad_epochs == 1
    es2 = T.EarlyStopping(patience=3, mode="min")
    es2.load_state_dict(es.state_dict())
    assert es2.best == 1.0 and es2.bad_epochs == 1 and not es2.should_stop


def test_warmup_cosine_lr_ramps_anneals_and_restores():
    """Linear warmup, then cosine towards 0 over the planned steps; the lr is set just before each optimizer step."""
    from spine_models.engine.trainer import WarmupCosineLR

    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = WarmupCosineLR(opt, total_steps=10, warmup_steps=2)
    lrs = []
    for _ in range(10):
        p.grad = torch.zeros(1)
        opt.step()
        lrs.append(opt.param_groups[0]["lr"])
        sched.step()
    assert lrs[:3] == pytest.approx([1 / 3, 2 / 3, 1.0]) and lrs[-1] < 0.05
    assert all(a >= b for a, b in zip(lrs[2:], lrs[3:]))
    again = WarmupCosineLR(torch.optim.SGD([p], lr=1.0), total_steps=10, warmup_steps=2)
    again.load_state_dict(sched.state_dict())
    assert again.steps == 10


def test_detection_dataset_boxes_follow_the_flip(tmp_path):
    """The detection dataset's boxes go through albumentations with the image (no hand-flipped boxes)."""
    import albumentations as A
    import cv2

    from spine_models.data.records import BoxLabel, Sample
    from spine_models.data.torch_datasets import DetectionTorchDataset, detection_collate

    img = np.zeros((200, 100), np.uint16)
    img[20:60, 10:30] = 60000
    cv2.imwrite(str(tmp_path / "a.png"), img)
    s = Sample(id="a", patient_id="a", path=tmp_path / "a.png", boxes=[BoxLabel(10, 20, 30, 60, "lumbar_implant")])
    flip = A.Compose([A.HorizontalFlip(p=1.0)], bbox_params=A.BboxParams(format="pascal_voc", label_fields=["labels"]))
    plain = DetectionTorchDataset([s], ["lumbar_implant"], 100)[0]
    flipped = DetectionTorchDataset([s], ["lumbar_implant"], 100, augment=flip)[0]
    assert plain[0].shape == (3, 100, 50) and plain[1]["labels"].tolist() == [1]
    np.testing.assert_allclose(plain[1]["boxes"].numpy(), [[5, 10, 15, 30]])
    np.testing.assert_allclose(flipped[1]["boxes"].numpy(), [[35, 10, 45, 30]])
    assert torch.equal(flipped[0], plain[0].flip(-1))
    imgs, targets = detection_collate([plain, flipped])
    assert len(imgs) == 2 and targets[1]["labels"].tolist() == [1]
