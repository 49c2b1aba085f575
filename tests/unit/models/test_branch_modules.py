"""The PyTorch branches: the published architectures' sizes, the contract's shapes at both
profiles, LoRA merging, checkpoint refusals, the data-dependent initialisation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from soundscape.bundle import BundleFeatures, expected_io
from soundscape.errors import UserError
from soundscape.models import branches
from soundscape.models.efficientnet import EfficientNetLoRA, make_divisible
from soundscape.models.lora import LoRAConv2d, merge_lora
from soundscape.models.profiles import FULL, SMALL
from soundscape.models.resnet import ResNet

FEATURES = BundleFeatures()


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for name, p in model.named_parameters() if ".lora_" not in name)


def test_full_size_matches_the_published_architectures() -> None:
    # torchvision's parameter counts at 3 input channels and 1000 classes.
    assert _params(ResNet(1000, in_channels=3)) == 25_557_032
    assert _params(EfficientNetLoRA(1000, in_channels=3)) == 12_233_232
    assert [make_divisible(c * 1.2) for c in (32, 16, 24, 40, 80, 112, 192, 320)] == \
        [40, 24, 32, 48, 96, 136, 232, 384]


def test_full_size_branches_and_meta_weigh_about_the_seeds_size() -> None:
    total = sum(_params(branches.build(r, FULL, 206, FEATURES))
                for r in ("embed_classifier", "resnet50", "effnet_b3_lora", "wave_cnn", "meta"))
    assert 43_000_000 < total < 44_000_000  # 174 MB of float32 (docs/explanation/model.md on the 197.5 MB)


@pytest.mark.parametrize("role", branches.TORCH_ROLES)
def test_small_profile_keeps_the_contract_shapes(role: str) -> None:
    io = expected_io(FEATURES, 206)[role]
    model = branches.build(role, SMALL, 206, FEATURES).eval()
    (spec,) = io["inputs"]
    with torch.no_grad():
        out = model(torch.zeros(2, *spec.shape[1:]))
    assert list(out.shape) == [2, *io["outputs"][0].shape[1:]]
    assert _params(model) < 1_000_000


def test_lora_merge_is_exact_and_keeps_parameter_names() -> None:
    torch.manual_seed(0)
    model = EfficientNetLoRA(5, width=0.25, depth=0.25, rank=4, alpha=8.0).eval()
    for module in model.modules():
        if isinstance(module, LoRAConv2d):
            torch.nn.init.normal_(module.lora_b, std=0.1)
            assert not module.weight.requires_grad and module.lora_a.requires_grad
    x = torch.randn(2, 1, 64, 313)
    with torch.no_grad():
        before = model(x)
        count = merge_lora(model)
        after = model(x)
    assert count > 10 and not any(isinstance(m, LoRAConv2d) for m in model.modules())
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-5)
    plain = EfficientNetLoRA(5, width=0.25, depth=0.25, rank=4, alpha=8.0)
    merge_lora(plain)
    plain.load_state_dict(model.state_dict())  # same names, no adapters


def test_checkpoints_that_do_not_fit_are_refused(tmp_path: Path) -> None:
    small = branches.build("resnet50", SMALL, 206, FEATURES)
    path = tmp_path / "resnet.pt"
    torch.save({"state_dict": small.state_dict()}, path)
    branches.load_checkpoint(branches.build("resnet50", SMALL, 206, FEATURES), path, "resnet50")
    with pytest.raises(UserError, match=r"does not fit the resnet50 branch \(wrong shape: conv1.weight"):
        branches.load_checkpoint(branches.build("resnet50", FULL, 206, FEATURES), path, "resnet50")
    with pytest.raises(UserError, match="wrong shape: fc.weight"):
        branches.load_checkpoint(branches.build("resnet50", SMALL, 10, FEATURES), path, "resnet50")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="not a PyTorch state_dict"):
        branches.load_checkpoint(small, tmp_path / "junk.pt", "resnet50")
    with pytest.raises(UserError, match="no such checkpoint"):
        branches.load_checkpoint(small, tmp_path / "absent.pt", "resnet50")


def test_lora_factors_may_be_absent_from_a_checkpoint(tmp_path: Path) -> None:
    plain = branches.build("effnet_b3_lora", SMALL, 206, FEATURES)
    state = {k: v for k, v in plain.state_dict().items() if ".lora_" not in k}
    torch.save(state, tmp_path / "effnet.pt")
    branches.load_checkpoint(branches.build("effnet_b3_lora", SMALL, 206, FEATURES),
                             tmp_path / "effnet.pt", "effnet_b3_lora")


def test_data_dependent_init_standardises_outputs() -> None:
    torch.manual_seed(1)
    model = branches.build("meta", SMALL, 206, FEATURES)
    batches = [torch.rand(16, 4 * 206) for _ in range(4)]
    branches.data_dependent_init(model, batches)
    with torch.no_grad():
        out = torch.cat([model.eval()(b) for b in batches])
    torch.testing.assert_close(out.mean(0), torch.zeros(206), atol=1e-4, rtol=0)
    torch.testing.assert_close(out.std(0), torch.ones(206), atol=1e-3, rtol=0)


def test_export_refuses_roles_without_weights(tmp_path: Path) -> None:
    from soundscape.models.export import ExportRequest, build_models

    request = ExportRequest(out=tmp_path / "b", profile=SMALL, labels=["a", "b"], features=FEATURES,
                            checkpoints={"meta": tmp_path / "meta.pt"}, random_seed=None)
    with pytest.raises(UserError, match=r"no checkpoint for \['embedder', 'embed_classifier'"):
        build_models(request, progress=lambda _m: None)
