"""int8 weight storage (docs/compress_weights.py): half the size, float32 back at load within half a quantum."""
from __future__ import annotations

from pathlib import Path

import torch

from spine_models.models.cards import ModelCard, load_state, save_checkpoint_file
from spine_models.models.classification import read_state_file
from spine_models.models.registry import create_model


def test_int8_round_trip_and_size(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model("spinenet_tiny", task="classify", num_classes=3, in_chans=1, width=16)
    sd = model.state_dict()
    fp16 = save_checkpoint_file(tmp_path / "a.pt", arch="spinenet_tiny", task="classify", state_dict=sd)
    q = save_checkpoint_file(tmp_path / "b.pt", arch="spinenet_tiny", task="classify", state_dict=sd, int8=True)
    assert fp16 != q and (tmp_path / "b.pt").stat().st_size < 0.7 * (tmp_path / "a.pt").stat().st_size
    card = ModelCard(id="t", task="classify", arch="spinenet_tiny", view="any", trained_on="test", weights=str(tmp_path / "b.pt"),
                     sha256=q, input_size=64, train_command="-", license="Apache-2.0", classes=["a", "b", "c"])
    back, _ = load_state(card)
    assert set(back) == set(sd)
    for k, v in sd.items():
        if v.is_floating_point() and v.dim() >= 2 and v.numel() >= 4096:
            step = v.reshape(v.shape[0], -1).abs().amax(1) / 127
            err = (back[k] - v).reshape(v.shape[0], -1).abs().amax(1)
            assert back[k].dtype == torch.float32 and bool((err <= step / 2 + 1e-6).all()), k
    # init= from an int8 file reads the same floats
    init = read_state_file(tmp_path / "b.pt")
    assert all(torch.equal(init[k], back[k]) for k in back)
    model.load_state_dict(back)  # loads into the architecture unchanged
