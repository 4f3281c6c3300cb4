"""ResNet families with SE, CBAM and AW-convolution, registered with timm; ``load_pretrained``.

Importing this package registers ``cbamresnet{D}``, ``aw_resnet{D}``, ``aw_seresnet{D}``,
``aw_cbamresnet{D}`` (D in 18, 34, 50, 101, 152) and the small-image ``*resnet{D}_cifar`` families
(D in 20, 32, 56, 110) with ``timm.create_model``. Every model loads plain ResNet checkpoints through
``load_pretrained`` and, the ``aw_*`` ones, through timm's ``pretrained=True`` (with
``pretrained_cfg_overlay=dict(file=...)``) and ``checkpoint_path=`` routes.
"""

from awconv.models.aw_policy import AW_KWARGS, convert_blocks, is_block_conv
from awconv.models.pretrained import LoadResult, allow_plain_checkpoints, load_pretrained
from awconv.models.resnet import AWResNet
from awconv.models.resnet_cifar import AWCifarResNet, CifarResNet

__all__ = [
    "AW_KWARGS",
    "AWCifarResNet",
    "AWResNet",
    "CifarResNet",
    "LoadResult",
    "allow_plain_checkpoints",
    "convert_blocks",
    "is_block_conv",
    "load_pretrained",
]
