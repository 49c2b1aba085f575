"""The fusion model's graphs as PyTorch modules: build them, load checkpoints, merge LoRA.

Every role of the bundle contract (soundscape/bundle.py) but the front-end has a builder
here; the graphs' inputs and outputs follow the contract, whatever the profile.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from soundscape.bundle import BRANCHES, EMBEDDER, META, BundleFeatures
from soundscape.errors import UserError
from soundscape.models.efficientnet import EfficientNetLoRA
from soundscape.models.embedder import Cnn14Embedder
from soundscape.models.lora import merge_lora
from soundscape.models.mlp import embed_classifier, meta_mlp
from soundscape.models.profiles import Profile
from soundscape.models.resnet import ResNet
from soundscape.models.wave_cnn import WaveCnn

#: The graphs this package builds, in export order (the embedder first: its embeddings
#: are the embedding classifier's calibration inputs).
TORCH_ROLES = (EMBEDDER, *BRANCHES, META)

_BUILDERS: dict[str, Callable[[Profile, int, BundleFeatures], nn.Module]] = {
    EMBEDDER: lambda p, c, f: Cnn14Embedder(p.embedder_channels, n_mels=f.n_mels),
    "embed_classifier": lambda p, c, f: embed_classifier(p.embed_hidden, c),
    "resnet50": lambda p, c, f: ResNet(c, p.resnet_blocks, p.resnet_width),
    "effnet_b3_lora": lambda p, c, f: EfficientNetLoRA(
        c, p.effnet_width, p.effnet_depth, p.lora_rank, p.lora_alpha
    ),
    "wave_cnn": lambda p, c, f: WaveCnn(p.wave_channels, c),
    META: lambda p, c, f: meta_mlp(p.meta_hidden, c, branches=len(BRANCHES)),
}


def build(role: str, profile: Profile, num_classes: int, features: BundleFeatures) -> nn.Module:
    """A freshly initialised module for `role` (training mode, LoRA adapters unmerged)."""
    return _BUILDERS[role](profile, num_classes, features)


def load_checkpoint(model: nn.Module, path: Path, role: str) -> None:
    """Load a state_dict saved with torch.save (or {'state_dict': ...}) into `model`.

    LoRA factors may be absent (a checkpoint of a merged or plain EfficientNet): the
    adapters then stay zero and change nothing. Anything else missing, extra or of the
    wrong shape is refused with the keys named.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"{path}: no such checkpoint (for {role})") from None
    except Exception as exc:  # pickle, zip and torch's own errors
        raise UserError(f"{path}: not a PyTorch state_dict ({exc})",
                        hint="save it with torch.save(model.state_dict(), path)") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise UserError(f"{path}: holds a {type(state).__name__}, not a state_dict")
    own = model.state_dict()
    wrong = [f"{k} {tuple(v.shape)} != {tuple(own[k].shape)}" for k, v in state.items()
             if k in own and tuple(v.shape) != tuple(own[k].shape)]
    missing = [k for k in own if k not in state and ".lora_" not in k]
    unexpected = [k for k in state if k not in own]
    if wrong or missing or unexpected:
        parts = [f"{label}: {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}"
                 for label, keys in (("wrong shape", wrong), ("missing", missing),
                                     ("unexpected", unexpected)) if keys]
        raise UserError(f"{path}: does not fit the {role} branch ({'; '.join(parts)})",
                        hint="check --profile and --classes match the checkpoint")
    model.load_state_dict(state, strict=False)


def prepare_for_export(model: nn.Module) -> nn.Module:
    """Evaluation mode with LoRA merged into its convolutions."""
    merge_lora(model)
    return model.eval()


@torch.no_grad()
def recalibrate_batch_norm(model: nn.Module, batches: list[torch.Tensor]) -> None:
    """Re-estimate batch-norm statistics from real-looking inputs.

    Freshly initialised weights with the default statistics (mean 0, variance 1) let
    activations grow through fifty layers until every sigmoid saturates; random-weight
    bundles would then score every class 1.0 and measure nothing. Averaging the true
    statistics over the inputs makes them behave like trained networks for benchmarks.
    """
    model.eval()  # dropout and stochastic depth stay off; only the norms learn statistics
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average over all batches
        norm.train()
    for batch in batches:
        model(batch)
    model.eval()


#: Fresh residual branches start at this fraction of their normalised output.
RESIDUAL_GAIN = 0.1


@torch.no_grad()
def data_dependent_init(model: nn.Module, batches: list[torch.Tensor]) -> None:
    """Make fresh random weights behave like a trained network on real-looking inputs.

    Residual branches are damped (SkipInit/Fixup style), batch-norm statistics are
    re-estimated, then each linear layer in turn is rescaled so its outputs have zero
    mean and unit variance over `batches`, then the norms once more. Without this, a
    random ResNet50 is chaotic (0.16 dB of input noise moves its logits as much as a
    different clip does) and the meta model's output is all bias (every clip gets the
    same top label): quantization agreement measured on it would mean nothing.
    """
    for module in model.modules():
        norm = module.residual_norm() if hasattr(module, "residual_norm") else None
        if norm is not None:
            norm.weight.mul_(RESIDUAL_GAIN)
    recalibrate_batch_norm(model, batches)
    for layer in [m for m in model.modules() if isinstance(m, nn.Linear)]:
        outputs: list[torch.Tensor] = []
        handle = layer.register_forward_hook(lambda _m, _i, out: outputs.append(out.clone()))
        try:
            for batch in batches:
                model(batch)
        finally:
            handle.remove()
        out = torch.cat(outputs)
        mean, std = out.mean(0), out.std(0).clamp_min(1e-6)
        layer.weight.div_(std[:, None])
        layer.bias.sub_(mean).div_(std)
    recalibrate_batch_norm(model, batches)
