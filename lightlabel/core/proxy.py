"""The offline proxy base: a small open_clip image tower standing in for CLIP where no CLIP weights exist.

``lightlabel-proxy-rn`` (open_clip ModifiedResNet, width 16, embed dim 512, 64 px) was trained by
lightlabel's release tool ``proxy_base.py`` (source repository) on tiny-imagenet-150 (202 ImageNet classes) to match the real CLIP ViT-B/32 text
embeddings of those classes. Its text tower is a random stand-in, so its head is always built from those real text
embeddings, which ship inside the package (``assets/clip-vit-b32-imagenet1k-text.fp16.safetensors``, rows in the
order of ``assets/imagenet1k_wnids.txt``; sources and checksums in ``assets/README.md``). That limits it to ImageNet
classes named by WordNet id, or to names mapped onto them. It is a proxy, not CLIP. Nothing here reads a file
outside the package.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import open_clip
import safetensors.torch
import torch
import torch.nn.functional as F

from ..classes import imagenet_class_indices, imagenet_class_names, imagenet_wnids

__all__ = ["CIFAR10_AS_IMAGENET", "PROXY_BASE", "PROXY_CHECKPOINT", "imagenet_class_names", "imagenet_text_embeddings",
           "imagenet_wnids", "proxy_available", "proxy_head"]

ASSETS = Path(__file__).resolve().parent.parent / "assets"
#: open_clip model name of the proxy base (config shipped in lightlabel/model_configs).
PROXY_BASE = "lightlabel-proxy-rn"
#: Its weights (fp16 safetensors, loadable with ``open_clip.create_model(PROXY_BASE, pretrained=...)``).
PROXY_CHECKPOINT = ASSETS / "proxy-base.safetensors"
TEXT_FEATURES = ASSETS / "clip-vit-b32-imagenet1k-text.fp16.safetensors"


#: CIFAR-10 classes as sets of related ImageNet-1k classes: their mean real CLIP text embedding stands in for the
#: prompt ensemble the proxy base cannot compute (its text tower is a random stand-in).
CIFAR10_AS_IMAGENET: dict[str, list[str]] = {
    "airplane": ["airliner", "airship"],
    "automobile": ["sports car", "convertible", "taxicab", "minivan", "station wagon", "race car", "jeep", "limousine"],
    "bird": ["goldfinch", "house finch", "junco", "indigo bunting", "American robin", "jay", "magpie", "chickadee",
             "bald eagle", "ostrich"],
    "cat": ["tabby cat", "tiger cat", "Persian cat", "Siamese cat", "Egyptian Mau"],
    "deer": ["hartebeest", "impala (antelope)", "gazelle"],
    "dog": ["Golden Retriever", "Labrador Retriever", "German Shepherd Dog", "Beagle", "pug", "Border Collie"],
    "frog": ["American bullfrog", "tree frog", "tailed frog"],
    "horse": ["common sorrel horse"],
    "ship": ["container ship", "ocean liner", "fireboat", "aircraft carrier", "pirate ship"],
    "truck": ["semi-trailer truck", "fire truck", "pickup truck", "garbage truck", "tow truck", "moving van"],
}


def proxy_available() -> bool:
    return PROXY_CHECKPOINT.is_file()


def imagenet_text_embeddings(wnids: Sequence[str]) -> torch.Tensor:
    """Real CLIP ViT-B/32 text embeddings of ImageNet classes given by WordNet id, L2-normalised: ``[C, 512]``
    float32 (stored as fp16 in the package).

    Raises:
        ValueError: unknown wnids.
    """
    feats = safetensors.torch.load_file(str(TEXT_FEATURES))["text_features"]
    return F.normalize(feats[imagenet_class_indices(wnids)].float(), dim=-1)


def proxy_head(classes: Sequence[str]) -> tuple[list[str], torch.Tensor]:
    """Readable class names and the text embeddings ``[C, 512]`` for the proxy base's head: classes given as ImageNet
    WordNet ids, or the CIFAR-10 class names (:data:`CIFAR10_AS_IMAGENET`).

    Raises:
        ValueError: other class names (the proxy base has no text tower to embed them; use a CLIP base).
    """
    classes = list(classes)
    if all(c in CIFAR10_AS_IMAGENET for c in classes):
        names = list(open_clip.IMAGENET_CLASSNAMES)
        rows = [imagenet_text_embeddings([imagenet_wnids()[names.index(n)] for n in CIFAR10_AS_IMAGENET[c]]).mean(0)
                for c in classes]
        return classes, F.normalize(torch.stack(rows), dim=-1)
    order = set(imagenet_wnids())
    if all(c in order for c in classes):
        return imagenet_class_names(classes), imagenet_text_embeddings(classes)
    raise ValueError(f"the proxy base embeds ImageNet WordNet ids or the CIFAR-10 class names only (it has no text "
                     f"tower); got {classes[:5]}: pass a CLIP base (`base=`, `pretrained=`) for other classes")
